// nsproxy-go-peer: the benchmarks' third peer, written the way nsproxy's original proof of
// concept worked: one Go process that opens a listener inside every tenant's network
// namespace (containernetworking's ns package: lock the OS thread, setns, listen, setns
// back) and serves each with net/http/httputil.ReverseProxy to one upstream in the host
// namespace, setting the tenant header from the listener (forged copies removed; the
// proxy adds X-Forwarded-For itself). Not part of nsproxy: built and run by
// test/bench/*.py only.
//
//	nsproxy-go-peer --listen 127.0.0.1:8088 --upstream 127.0.0.1:18080 \
//	    --tenants FILE   (one "name /run/netns/path" per line)
//
// Prints "serving N tenants" on stdout once every listener accepts; runs until killed.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8088", "address inside each namespace")
	upstream := flag.String("upstream", "", "host:port in the host namespace")
	tenants := flag.String("tenants", "", "file: one \"name netns-path\" per line")
	idle := flag.Int("idle-per-host", 256, "idle upstream connections kept (as nsproxyd's pool)")
	flag.Parse()
	if *upstream == "" || *tenants == "" {
		fmt.Fprintln(os.Stderr, "usage: nsproxy-go-peer --upstream HOST:PORT --tenants FILE [--listen ADDR]")
		os.Exit(2)
	}
	target, err := url.Parse("http://" + *upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nsproxy-go-peer:", err)
		os.Exit(2)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = *idle
	transport.MaxIdleConnsPerHost = *idle
	transport.IdleConnTimeout = 30 * time.Second

	f, err := os.Open(*tenants)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nsproxy-go-peer:", err)
		os.Exit(1)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		name, path := fields[0], fields[1]
		var ln net.Listener
		err := ns.WithNetNSPath(path, func(ns.NetNS) error {
			var e error
			ln, e = net.Listen("tcp", *listen)
			return e
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "nsproxy-go-peer: listen %s in %s: %v\n", *listen, path, err)
			os.Exit(1)
		}
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.Transport = transport
		director := proxy.Director
		tenant := name
		proxy.Director = func(r *http.Request) {
			director(r)
			r.Header.Del("X-Tenant-Id")
			for k := range r.Header {
				if strings.HasPrefix(k, "X-Tenant-Label-") {
					r.Header.Del(k)
				}
			}
			r.Header.Set("X-Tenant-Id", tenant)
		}
		go func() {
			srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout: 60 * time.Second}
			if err := srv.Serve(ln); err != nil {
				fmt.Fprintln(os.Stderr, "nsproxy-go-peer:", err)
				os.Exit(1)
			}
		}()
		n++
	}
	fmt.Printf("serving %d tenants\n", n)
	select {}
}
