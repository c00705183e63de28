// Package version holds the build's identity, shown by `version` and `info`.
package version

const (
	// Version of Shoal. The engine reports it as its server version.
	Version = "0.1.0"
	// APIVersion is the highest Docker Engine API version served.
	APIVersion = "1.51"
	// MinAPIVersion is the oldest API version accepted in request paths.
	MinAPIVersion = "1.24"
)

// GitCommit may be set at link time with -ldflags "-X github.com/shoal/shoal/version.GitCommit=...".
var GitCommit = "unknown"
