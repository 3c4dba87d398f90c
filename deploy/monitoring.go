// Package deploy holds what runs collider beside its Go code: the image's
// build and end-to-end suite, and the monitoring an operator loads into
// Prometheus and Grafana, embedded here so that the binary carries it
// (`collider monitor alerts|dashboard`).
package deploy

import _ "embed"

// AlertRules is prometheus/alerts.yml: the alerting rules over /metrics.
//
//go:embed prometheus/alerts.yml
var AlertRules []byte

// Dashboard is grafana/collider.json: the Grafana dashboard over /metrics.
//
//go:embed grafana/collider.json
var Dashboard []byte
