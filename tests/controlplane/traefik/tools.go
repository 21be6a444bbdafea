//go:build tools

// A blank import so `go mod tidy` keeps every dependency of the traefik binary.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
