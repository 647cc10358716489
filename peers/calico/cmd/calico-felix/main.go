// calico-felix: Calico's per-host agent Felix (github.com/projectcalico/calico/felix/daemon, as
// Calico's own felix/cmd/calico-felix runs it), built with Go >= 1.26 for meshsync's tests: a
// real Typha client that turns what it receives into the dataplane state it would program. The
// tests run it with an external dataplane driver (FELIX_USEINTERNALDATAPLANEDRIVER=false, the
// felix-dataplane-recorder peer), so it needs no root and touches no iptables, routes or BPF.
// The only difference from Calico's main is the import of jsonfix, without which such a build
// panics on the first labelled resource (see peers/calico/internal/jsonfix).
package main

import (
	docopt "github.com/docopt/docopt-go"
	log "github.com/sirupsen/logrus"

	"github.com/projectcalico/calico/felix/daemon"
	"github.com/projectcalico/calico/pkg/buildinfo"

	_ "meshsync.test/peers/calico/internal/jsonfix"
)

const usage = `Felix, the Calico per-host daemon.

Usage:
  calico-felix [options]

Options:
  -c --config-file=<filename>  Config file to load [default: /etc/calico/felix.cfg].
  --version                    Print the version and exit.
`

func main() {
	version := "Version:            " + buildinfo.Version + "\n" +
		"Full git commit ID: " + buildinfo.GitRevision + "\n" +
		"Build date:         " + buildinfo.BuildDate + "\n"
	arguments, err := docopt.ParseArgs(usage, nil, version)
	if err != nil {
		println(usage)
		log.Fatalf("Failed to parse usage, exiting: %v", err)
	}
	configFile := arguments["--config-file"].(string)

	daemon.Run(configFile, buildinfo.Version, buildinfo.GitRevision, buildinfo.BuildDate)
}
