// Command shoal-shim supervises one container for shoald (see package
// engine/runtime/shim), and doubles as the container init for --init when
// invoked as shoal-init. Build it static (CGO_ENABLED=0) so it runs inside any
// container; it imports only the standard library.
package main

import (
	"os"
	"strings"

	"github.com/shoal/shoal/engine/runtime/shim"
)

func main() {
	if strings.HasSuffix(os.Args[0], "shoal-init") {
		os.Exit(shim.InitMain(os.Args[1:]))
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "run":
			os.Exit(shim.Main(os.Args[2:]))
		case "init":
			os.Exit(shim.InitMain(os.Args[2:]))
		}
	}
	os.Stderr.WriteString("usage: shoal-shim run --id ID --bundle DIR --runc-root DIR --log FILE [--runc PATH] [--cgroup PATH] [--tty] [--stdin]\n" +
		"       shoal-shim init [--] CMD [ARG...]\n")
	os.Exit(2)
}
