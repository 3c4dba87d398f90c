// Package domain holds the few things every part of collider shares and
// none owns: the application's error codes (mapped to HTTP statuses in one
// place, api/errors.go), China Standard Time as the store keeps it, and
// the size of a page of a list. It imports nothing of the project.
package domain
