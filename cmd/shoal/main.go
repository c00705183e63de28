// Command shoal is the Shoal command line.
package main

import (
	"os"

	"github.com/shoal/shoal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
