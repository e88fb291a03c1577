package kcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// setupNetwork creates the namespace, the veth pair into it and the host
// routes to the Pod and Service ranges. Inside the namespace there is no
// default route: a packet for any address outside the namespace's own
// ranges, the veth /30 and the Pod and Service ranges, has nowhere to go.
func (c *Cluster) setupNetwork() error {
	cfg := c.cfg
	_ = run("modprobe", "br_netfilter") // kube-proxy needs bridged traffic to pass iptables; may be built in
	if !fileExists(cfg.netnsPath()) {
		if err := run("ip", "netns", "add", cfg.Name); err != nil {
			return err
		}
	}
	ns := func(args ...string) error { return run("ip", append([]string{"-n", cfg.Name}, args...)...) }
	if err := ns("link", "set", "lo", "up"); err != nil {
		return err
	}
	if _, err := os.Stat("/sys/class/net/" + cfg.vethHost()); err != nil {
		if err := run("ip", "link", "add", cfg.vethHost(), "type", "veth", "peer", "name", cfg.vethNode(), "netns", cfg.Name); err != nil {
			return err
		}
		if err := run("ip", "addr", "add", cfg.HostIP+"/30", "dev", cfg.vethHost()); err != nil {
			return err
		}
		if err := ns("addr", "add", cfg.NodeIP+"/30", "dev", cfg.vethNode()); err != nil {
			return err
		}
	}
	if err := run("ip", "link", "set", cfg.vethHost(), "up"); err != nil {
		return err
	}
	if err := ns("link", "set", cfg.vethNode(), "up"); err != nil {
		return err
	}
	for _, cidr := range []string{cfg.PodCIDR, cfg.ServiceCIDR} {
		if err := run("ip", "route", "replace", cidr, "via", cfg.NodeIP, "dev", cfg.vethHost()); err != nil {
			return err
		}
	}
	// Inside the namespace: forward between the veth and the Pod bridge, and
	// let iptables see bridged traffic (Pod to Service to a Pod on the same
	// bridge). Ports from 80 up may be bound without root: Traefik runs as a
	// user of its own (see traefikUID).
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1", "net.ipv4.ip_unprivileged_port_start=80"} {
		if err := run("ip", "netns", "exec", cfg.Name, "sysctl", "-q", "-w", kv); err != nil {
			return err
		}
	}
	// Files `ip netns exec` binds over /etc for processes it starts
	// (CommandInNamespace): the Ingress host names resolve to the node, and no
	// resolver outside the namespace is ever asked.
	if err := os.MkdirAll(cfg.etcNetns(), 0o755); err != nil {
		return err
	}
	hosts := "127.0.0.1 localhost\n" + cfg.NodeIP + " " + cfg.NodeName + " " + strings.Join(cfg.IngressHosts, " ") + "\n"
	if err := os.WriteFile(filepath.Join(cfg.etcNetns(), "hosts"), []byte(hosts), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.etcNetns(), "resolv.conf"), []byte("# no resolver: names outside the cluster do not resolve\noptions timeout:1 attempts:1\n"), 0o644)
}

// teardownNetwork removes what setupNetwork made, and the network namespaces
// the CNI plugin made for Pods of this cluster. Deleting the namespace takes
// its iptables rules, routes and the bridge with it.
func (c *Cluster) teardownNetwork() error {
	cfg := c.cfg
	var errs []string
	if _, err := os.Stat("/sys/class/net/" + cfg.vethHost()); err == nil {
		if err := run("ip", "link", "del", cfg.vethHost()); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, cidr := range []string{cfg.PodCIDR, cfg.ServiceCIDR} {
		_ = run("ip", "route", "del", cidr) // gone with the veth already, usually
	}
	if fileExists(cfg.netnsPath()) {
		if err := run("ip", "netns", "del", cfg.Name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := os.RemoveAll(cfg.etcNetns()); err != nil {
		errs = append(errs, err.Error())
	}
	for _, p := range c.podNetns() {
		if err := run("ip", "netns", "del", filepath.Base(p)); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("network teardown: %s", strings.Join(errs, "; "))
	}
	return nil
}

// podNetns lists the Pod network namespaces (containerd keeps them under
// /run/netns/cni-*) that no process uses any more. Called after every
// container of the cluster is gone, those are ours; a namespace in use by
// another runtime on the machine is left alone.
func (c *Cluster) podNetns() []string {
	var idle []string
	matches, _ := filepath.Glob("/run/netns/cni-*")
	for _, m := range matches {
		out, err := output("ip", "netns", "pids", filepath.Base(m))
		if err == nil && strings.TrimSpace(out) == "" {
			idle = append(idle, m)
		}
	}
	return idle
}
