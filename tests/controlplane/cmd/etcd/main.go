// Command etcd runs a single-member etcd server for the test control plane.
//
// Built from go.etcd.io/etcd/server/v3 at the version k8s.io/apiserver requires, so the
// apiserver talks to the etcd it was tested against without downloading a release binary.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		log.Fatalf("bad url %q: %v", s, err)
	}
	return *u
}

func main() {
	dir := flag.String("data-dir", "", "data directory (required)")
	clientURL := flag.String("client-url", "http://127.0.0.1:2379", "client listen and advertise URL")
	peerURL := flag.String("peer-url", "http://127.0.0.1:2380", "peer listen and advertise URL")
	logLevel := flag.String("log-level", "warn", "etcd log level")
	flag.Parse()
	if *dir == "" {
		log.Fatal("--data-dir is required")
	}

	cu, pu := mustURL(*clientURL), mustURL(*peerURL)
	cfg := embed.NewConfig()
	cfg.Name = "testenv"
	cfg.Dir = *dir
	// Test data is throwaway: skipping fsync makes writes an order of magnitude cheaper.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = *logLevel
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	// The initial cluster string embeds the peer URL, so it has to be derived after changing it.
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("start etcd: %v", err)
	}
	defer e.Close()

	select {
	case <-e.Server.ReadyNotify():
		log.Printf("etcd ready on %s", cu.String())
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		log.Fatal("etcd did not become ready within 60s")
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	case s := <-sig:
		log.Printf("etcd stopping on %s", s)
	}
}
