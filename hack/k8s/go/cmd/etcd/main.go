// Command etcd is upstream etcd's server/main.go. It is built at the
// go.etcd.io/etcd/server/v3 version that k8s.io/kubernetes itself requires, so
// the etcd server matches the etcd client compiled into kube-apiserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
