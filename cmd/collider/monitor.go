// collider monitor: print the Prometheus alert rules or the Grafana
// dashboard the binary carries, so that an operator with only the image has
// them: docker run --rm collider:latest monitor alerts > alerts.yml
package main

import (
	"context"
	"fmt"
	"io"

	"collider/deploy"
)

func cmdMonitor(_ context.Context, args []string, stdout, stderr io.Writer) int {
	files := map[string][]byte{"alerts": deploy.AlertRules, "dashboard": deploy.Dashboard}
	if len(args) != 1 || files[args[0]] == nil {
		fmt.Fprintln(stderr, "usage: collider monitor alerts|dashboard\n\n"+
			"  alerts     the Prometheus alerting rules (deploy/prometheus/alerts.yml)\n"+
			"  dashboard  the Grafana dashboard (deploy/grafana/collider.json)")
		return 2
	}
	if _, err := stdout.Write(files[args[0]]); err != nil {
		fmt.Fprintln(stderr, "collider monitor:", err)
		return 1
	}
	return 0
}
