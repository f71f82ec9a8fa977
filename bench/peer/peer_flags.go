// Kommutator's own addition to Centrifuge's _examples/ws_benchmarks/benchmark_gorilla.
//
// build-centrifuge.sh copies this file next to a copy of the example's main.go
// (same package main) and rewrites three lines of main.go with sed so that:
//   - main() starts by calling peerParseFlags();
//   - the HTTP server listens on peerListenAddr() instead of ":8000" (all interfaces);
//   - the Redis broker (CENTRIFUGE_BROKER=redis) dials peerRedisAddr() instead of
//     "localhost:6379".
//
// Not built by cargo or by anything else in this repository.

package main

import (
	"flag"
	"log"
	"os"
)

var (
	peerAddr = flag.String("addr", peerEnvOr("PEER_ADDR", "127.0.0.1:8000"),
		"listen address of the WebSocket endpoint /connection/websocket (env PEER_ADDR)")
	peerRedis = flag.String("redis", peerEnvOr("PEER_REDIS_ADDR", "127.0.0.1:6379"),
		"Redis address, used only with CENTRIFUGE_BROKER=redis (env PEER_REDIS_ADDR)")
)

func peerEnvOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func peerParseFlags() {
	flag.Parse()
	broker := "memory"
	if os.Getenv("CENTRIFUGE_BROKER") == "redis" {
		broker = "redis " + *peerRedis
	}
	log.Printf("peer: listening on %s (ws://%s/connection/websocket), broker %s",
		*peerAddr, *peerAddr, broker)
}

func peerListenAddr() string { return *peerAddr }

func peerRedisAddr() string { return *peerRedis }
