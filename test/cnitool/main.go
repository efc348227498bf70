// cnitool: drives CNI plugins the way container runtimes do, through libcni (Debian's
// golang-github-containernetworking-cni-dev, v1.1.2). Used by tests and the demo.
//
//	cnitool [--cni-path DIRS] [--container-id ID] [--ifname IF] [--args 'K=V;K=V']
//	        [--cache-dir DIR] add|check|del CONFIG_FILE|CONF_DIR [NETNS_PATH]
//
// CONFIG_FILE is a .conflist (with "plugins") or a single-plugin .conf, which is wrapped
// into a list. A directory stands for the node's default network as runtimes load it
// (containerd's go-cni, the kubelet): the first file in lexical order among its .conf,
// .conflist and .json files that libcni loads (loadDefaultNetwork). add prints the final result JSON on stdout. Errors go to stderr with
// exit status 1; a plugin's CNI error is shown as "CNI error <code>: <msg>".
// libcni 1.1.2 has no GC or STATUS support, so this tool does not offer them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage: cnitool [flags] add|check|del CONFIG_FILE [NETNS_PATH]\n")
	flag.PrintDefaults()
}

func fail(op string, err error) {
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		msg := cniErr.Msg
		if cniErr.Details != "" {
			msg += " (" + cniErr.Details + ")"
		}
		fmt.Fprintf(os.Stderr, "cnitool: %s: CNI error %d: %s\n", op, cniErr.Code, msg)
		// The full context (which plugin failed) is useful too.
		fmt.Fprintf(os.Stderr, "cnitool: %s: %v\n", op, err)
	} else {
		fmt.Fprintf(os.Stderr, "cnitool: %s: %v\n", op, err)
	}
	os.Exit(1)
}

// loadConfig reads a .conflist, or a single plugin config wrapped into a list.
func loadConfig(path string) (*libcni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	if _, ok := probe["plugins"]; ok {
		return libcni.ConfListFromBytes(data)
	}
	conf, err := libcni.ConfFromBytes(data)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(conf)
}

// loadDefaultNetwork: libcni's ConfFiles, sorted, the first that loads; a file that does
// not load is skipped with a line on stderr (as istio-cni and Multus choose the primary
// network).
func loadDefaultNetwork(dir string) (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		var list *libcni.NetworkConfigList
		if strings.HasSuffix(f, ".conflist") {
			list, err = libcni.ConfListFromFile(f)
		} else {
			var conf *libcni.NetworkConfig
			if conf, err = libcni.ConfFromFile(f); err == nil {
				list, err = libcni.ConfListFromConf(conf)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cnitool: skipped %s: %v\n", f, err)
			continue
		}
		return list, nil
	}
	return nil, fmt.Errorf("no network configuration in %s", dir)
}

// parseArgs turns "K=V;K=V" into libcni's argument pairs.
func parseArgs(s string) ([][2]string, error) {
	var out [][2]string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --args entry %q (want K=V)", kv)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func main() {
	defaultPath := os.Getenv("CNI_PATH")
	if defaultPath == "" {
		defaultPath = "/usr/lib/cni"
	}
	cniPath := flag.String("cni-path", defaultPath, "plugin directories, colon-separated (default $CNI_PATH or /usr/lib/cni)")
	containerID := flag.String("container-id", "cnitool", "container id (CNI_CONTAINERID)")
	ifName := flag.String("ifname", "eth0", "interface name (CNI_IFNAME)")
	cniArgs := flag.String("args", "", "CNI_ARGS as 'K=V;K=V'")
	cacheDir := flag.String("cache-dir", "", "libcni result cache directory (default "+libcni.CacheDir+")")
	flag.Usage = usage
	flag.Parse()

	if flag.NArg() < 2 || flag.NArg() > 3 {
		usage()
		os.Exit(2)
	}
	cmd, confPath := flag.Arg(0), flag.Arg(1)
	netns := ""
	if flag.NArg() == 3 {
		netns = flag.Arg(2)
	}
	switch cmd {
	case "add", "check":
		if netns == "" {
			fmt.Fprintf(os.Stderr, "cnitool: %s needs NETNS_PATH\n", cmd)
			os.Exit(2)
		}
	case "del":
	default:
		fmt.Fprintf(os.Stderr, "cnitool: unknown command %q (add, check, del; libcni 1.1.2 has no gc/status)\n", cmd)
		os.Exit(2)
	}
	if netns != "" {
		if abs, err := filepath.Abs(netns); err == nil {
			netns = abs
		}
	}

	var list *libcni.NetworkConfigList
	var err error
	if st, statErr := os.Stat(confPath); statErr == nil && st.IsDir() {
		list, err = loadDefaultNetwork(confPath)
	} else {
		list, err = loadConfig(confPath)
	}
	if err != nil {
		fail("load "+confPath, err)
	}
	args, err := parseArgs(*cniArgs)
	if err != nil {
		fail(cmd, err)
	}
	rt := &libcni.RuntimeConf{
		ContainerID: *containerID,
		NetNS:       netns,
		IfName:      *ifName,
		Args:        args,
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(*cniPath), *cacheDir, nil)
	ctx := context.Background()

	switch cmd {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(cmd, err)
		}
		if result != nil {
			if err := result.Print(); err != nil {
				fail(cmd, err)
			}
			fmt.Println()
		}
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(cmd, err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(cmd, err)
		}
	}
}
