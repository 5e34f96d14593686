// Command kube-proxy is upstream's cmd/kube-proxy/proxy.go, built from the module proxy
// through this wrapper module. On the real node it routes Service addresses (the API
// server's kubernetes.default) to their endpoints, so pods reach the API as in any cluster.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // for client metric registration
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	command := app.NewProxyCommand()
	code := cli.Run(command)
	os.Exit(code)
}
