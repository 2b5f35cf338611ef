"""Network namespaces for the fault campaign: the test's own hosts.

One hub namespace holds the coordinator (bound to the hub's bridge address),
the delay relay and the clients; each worker gets a namespace of its own,
joined to the hub's bridge by a veth pair. Nothing is added to the machine's
own namespace: the addresses (10.213.0.0/24) exist only inside these
namespaces, and two campaigns at once each have their own set (the names
carry the campaign's pid).

Faults are nftables rules in one namespace (this kernel has no netem):
  partition  drop every packet that does not stay on loopback
  loss       drop that fraction of them, at random (numgen random)
Lifting the fault deletes the namespace's 'chaos' table. Delay needs a relay
(relay.py), since nftables can drop but not hold packets.

Namespaces left by a campaign that was SIGKILLed (its pid is gone) are
deleted by the next one, so nothing stays for an operator to clean up."""
import os, re, subprocess

SUBNET = "10.213.0"
HUB_ADDR = SUBNET + ".1"
PREFIX = "sdxlchaos"


def run(*argv, check=True):
    r = subprocess.run(list(argv), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """deletes the namespaces of campaigns whose process is gone"""
    out = run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(PREFIX + r"(\d+)-", name)
        if m and not pid_alive(int(m.group(1))):
            run("ip", "netns", "del", name, check=False)


def preflight():
    """None when namespaces and nftables can be used here, else why not"""
    if os.geteuid() != 0:
        return "network faults need root (ip netns, nft); run as root or pass --no-net"
    for tool in ("ip", "nft"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode != 0:
            return "'%s' is not installed (deploy/bootstrap.sh installs iproute2 and nftables)" % tool
    return None


class Net:
    def __init__(self):
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.hub = self.tag + "-hub"
        self.hosts = {}  # name -> (namespace, address)
        self.made = []
        self.faults = {}  # namespace -> description of the fault in force
        sweep_stale()
        self._add_ns(self.hub)
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "addr", "add", HUB_ADDR + "/24", "dev", "br0")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")

    def _add_ns(self, ns):
        run("ip", "netns", "add", ns)
        self.made.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")

    def add_host(self, name):
        """a worker's namespace, wired to the hub; returns its address"""
        ns = "%s-%s" % (self.tag, name)
        addr = "%s.%d" % (SUBNET, len(self.hosts) + 2)
        self._add_ns(ns)
        peer = "v-" + name[:12]
        run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.hub)
        run("ip", "-n", self.hub, "link", "set", peer, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        self.hosts[name] = (ns, addr)
        return addr

    def ns_of(self, name):
        return self.hub if name in ("coordinator", "hub") else self.hosts[name][0]

    def exec_prefix(self, name):
        return ["ip", "netns", "exec", self.ns_of(name)]

    def _rules(self, ns, verdict):
        """a 'chaos' table dropping non-loopback traffic in both directions"""
        script = ("table inet chaos {\n"
                  " chain in {\n  type filter hook input priority -10;\n  iifname != \"lo\" %s\n }\n"
                  " chain out {\n  type filter hook output priority -10;\n  oifname != \"lo\" %s\n }\n"
                  "}\n") % (verdict, verdict)
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("nft in %s: %s" % (ns, r.stderr.strip()))

    def partition(self, name):
        ns = self.ns_of(name)
        self._rules(ns, "drop")
        self.faults[ns] = "partition"

    def loss(self, name, percent):
        ns = self.ns_of(name)
        self._rules(ns, "numgen random mod 100 < %d drop" % percent)
        self.faults[ns] = "loss %d%%" % percent

    def heal(self, name):
        ns = self.ns_of(name)
        if self.faults.pop(ns, None) is not None:
            run("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "chaos")

    def heal_all(self):
        for ns in list(self.faults):
            run("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "chaos", check=False)
        self.faults.clear()

    def close(self):
        for ns in reversed(self.made):
            run("ip", "netns", "del", ns, check=False)
        self.made = []
