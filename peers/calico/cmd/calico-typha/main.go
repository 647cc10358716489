// calico-typha: Calico's Typha daemon (github.com/projectcalico/calico/typha/pkg/daemon, as
// Calico's own typha/cmd/calico-typha runs it), built with Go >= 1.26 for meshsync's tests and
// benchmarks. The only difference from Calico's main is the import of jsonfix, without which
// such a build panics on the first labelled resource (see peers/calico/internal/jsonfix).
package main

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/projectcalico/calico/typha/pkg/daemon"

	_ "meshsync.test/peers/calico/internal/jsonfix"
)

func main() {
	err := daemon.New().InitializeAndServeForever(context.Background())
	logrus.WithError(err).Panic("Typha's daemon returned")
}
