#!/usr/bin/env python3
"""Fault campaign against a real local cluster (tests/cluster/chaos).

Injector: a coordinator and five workers (1 text, 2 unet, 1 final, 1 spare
unet started later) running two jobs; every 0.4-1.2 s one fault, one trial:
  kill       SIGKILL a process (the coordinator at double weight), restart it
             after 0.1-1 s
  stop       SIGSTOP it for 0.3-2 s, then SIGCONT
  partition  cut a worker, or the coordinator from every worker, off the
             network for 0.5-12 s (nftables drops every packet)
  loss       drop 10-50% of its packets at random for 2-8 s
  delay      hold every byte to and from a worker 50-1500 ms for 2-8 s
The network faults need root: each worker lives in a network namespace of
its own, wired to the coordinator's (netns.py); the coordinator binds the
hub's address with CURVE keys, as on a real network; two workers reach it
through a relay that delays on command (relay.py). --no-net runs the
process faults alone, on loopback. The first trials take each kind once.

Checker, once the faults stop, the network heals and every process runs
again: every job ends; each item exists exactly once (files: one image and
one JSON per key and one metadata.jsonl line; WebDataset: each member once
over the shards); no torn file (every PNG ends with its IEND chunk, every tar
reads to its end); no temp or staged file left; and no item failed, since
nothing in this campaign fails of its own: any failure is one caused by a
fault.

  chaos.py --bin build/bin --model build/models/sdxl-tiny-random --trials 20 --seed 1
Prints one line per fault and ends with 'chaos: ...' and exit 0 when clean.
"""
import argparse, ctypes, json, os, random, signal, socket, subprocess, sys, tarfile, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import curve_keys  # noqa: E402
import netns  # noqa: E402

WORKERS = (("t1", "text"), ("u1", "unet"), ("u2", "unet"), ("f1", "final"))
SPARE = ("u3", "unet")
RELAYED = ("u2", "f1", "u3")  # reach the coordinator through the delay relay
WAITER = "waiter"  # a client waiting for a job through the relay, all the campaign long
COORD_PORT = 5555  # inside the campaign's own hub namespace: no other listener there


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def die_with_parent():
    """children die with the campaign, so a killed campaign leaves no process behind"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Cluster:
    def __init__(self, bin_dir, model, root, hb, net):
        self.bin, self.model, self.root, self.hb, self.net = bin_dir, model, root, hb, net
        self.procs = {}  # name -> Popen
        self.specs = {}  # name -> argv
        self.env = dict(os.environ, OMP_NUM_THREADS="1")
        self.client_env = dict(self.env)
        self.worker_keys = []
        self.relay = None
        if net:
            self.ep = "tcp://%s:%d" % (netns.HUB_ADDR, COORD_PORT)
            keys = os.path.join(root, "keys")
            os.mkdir(keys)
            curve_keys.write_pair(keys, "server")
            client = curve_keys.write_pair(keys, "client")
            worker = curve_keys.write_pair(keys, "worker")
            names = " ".join(n for n, _ in WORKERS + (SPARE,))
            with open(os.path.join(keys, "allowed"), "w") as f:
                f.write("%s\n%s %s\n" % (client, worker, names))
            self.coord_keys = ["--curve-secret", os.path.join(keys, "server.secret"),
                               "--allow", os.path.join(keys, "allowed")]
            self.worker_keys = ["--curve-server-key", os.path.join(keys, "server.public"),
                                "--curve-secret", os.path.join(keys, "worker.secret"),
                                "--curve-public", os.path.join(keys, "worker.public")]
            self.client_env.update(SDXL_CURVE_SERVER_KEY=os.path.join(keys, "server.public"),
                                   SDXL_CURVE_SECRET=os.path.join(keys, "client.secret"),
                                   SDXL_CURVE_PUBLIC=os.path.join(keys, "client.public"))
            for name, _ in WORKERS + (SPARE,):
                net.add_host(name)
            self.relay_ports = {name: COORD_PORT + 1 + i for i, name in enumerate(RELAYED + (WAITER,))}
            listen = ["--listen=%s=%s:%d" % (n, netns.HUB_ADDR, p) for n, p in self.relay_ports.items()]
            self.relay = subprocess.Popen(net.exec_prefix("hub") + [sys.executable, os.path.join(HERE, "relay.py"),
                                          "--to", "%s:%d" % (netns.HUB_ADDR, COORD_PORT)] + listen,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                          preexec_fn=die_with_parent)
            if self.relay.stdout.readline().strip() != "ready":
                raise RuntimeError("the delay relay did not start")
        else:
            self.ep = "tcp://127.0.0.1:%d" % free_port()
            self.coord_keys = []

    def prefix(self, name):
        return self.net.exec_prefix(name) if self.net else []

    def start(self, name):
        log = open(os.path.join(self.root, name + ".log"), "a")
        self.procs[name] = subprocess.Popen(self.prefix(name) + self.specs[name], stdout=log, stderr=log,
                                            env=self.env, preexec_fn=die_with_parent)

    def add_coordinator(self):
        self.specs["coordinator"] = [os.path.join(self.bin, "sdxl-coordinator"), "--bind", self.ep, "--state",
                                     os.path.join(self.root, "state"), "--heartbeat-ms", str(self.hb),
                                     "--progress-timeout-ms", "4000", "--hold-grace-ms", "5000"] + self.coord_keys
        self.start("coordinator")

    def add_worker(self, name, role):
        ep = self.ep
        if self.net and name in RELAYED:
            ep = "tcp://%s:%d" % (netns.HUB_ADDR, self.relay_ports[name])
        self.specs[name] = [os.path.join(self.bin, "sdxl-worker"), "--coordinator", ep, "--role", role,
                            "--model", self.model, "--heartbeat-ms", str(self.hb), "--id", name,
                            # a restarted unet worker finds its held latents again
                            "--spool", os.path.join(self.root, "spool-" + name)] + self.worker_keys
        self.start(name)

    def alive(self, name):
        return self.procs[name].poll() is None

    def cli_argv(self, args, via=None):
        """a client command in the hub, straight to the coordinator or through the relay as VIA"""
        ep = "tcp://%s:%d" % (netns.HUB_ADDR, self.relay_ports[via]) if via and self.net else self.ep
        return self.prefix("hub") + [os.path.join(self.bin, "sdxl")] + list(args) + ["--coordinator", ep]

    def cli(self, *args, timeout=60):
        return subprocess.run(self.cli_argv(args), capture_output=True, text=True, timeout=timeout,
                              env=self.client_env)

    def waiter(self, job, timeout, via):
        """`sdxl wait JOB` running through the faults (the client's own riding out is under test)"""
        log = open(os.path.join(self.root, "wait-%s.log" % job), "w")
        return subprocess.Popen(self.cli_argv(["wait", job, "--timeout", str(timeout)], via), stdout=log,
                                stderr=subprocess.STDOUT, env=self.client_env, preexec_fn=die_with_parent)

    def set_delay(self, name, ms):
        self.relay.stdin.write("delay %s %d\n" % (name, ms))
        self.relay.stdin.flush()

    def stop_all(self):
        for p in list(self.procs.values()) + ([self.relay] if self.relay else []):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    p.kill()
                except ProcessLookupError:
                    pass
                p.wait()


def png_complete(path):
    with open(path, "rb") as f:
        data = f.read()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND"


def check_job(out, layout, n):
    """problems found in one job's output folder (a list of strings)"""
    problems = []
    names = os.listdir(out)
    left = [x for x in names if ".tmp." in x] + (["staging: " + ",".join(os.listdir(os.path.join(out, ".staging")))]
                                                 if os.path.isdir(os.path.join(out, ".staging")) else [])
    if left:
        problems.append("left behind: %s" % left)
    if layout == "files":
        pngs = sorted(x for x in names if x.endswith(".png"))
        keys = ["%08d" % i for i in range(n)]
        if pngs != [k + ".png" for k in keys]:
            problems.append("images: %d of %d, names %s..." % (len(pngs), n, pngs[:3]))
        torn = [x for x in pngs if not png_complete(os.path.join(out, x))]
        if torn:
            problems.append("torn images: %s" % torn)
        try:
            lines = [json.loads(l) for l in open(os.path.join(out, "metadata.jsonl"))]
        except (OSError, ValueError) as e:
            problems.append("metadata.jsonl: %s" % e)
            lines = []
        got = sorted(l.get("key") for l in lines)
        if got != keys:
            problems.append("metadata.jsonl keys: %d lines, %d unique" % (len(got), len(set(got))))
    else:
        members = []
        for t in sorted(x for x in names if x.endswith(".tar")):
            try:
                with tarfile.open(os.path.join(out, t)) as tf:
                    for m in tf.getmembers():
                        members.append(m.name)
                        if m.name.endswith(".png"):
                            data = tf.extractfile(m).read()
                            if data[-8:-4] != b"IEND":
                                problems.append("torn image %s in %s" % (m.name, t))
            except (tarfile.TarError, OSError) as e:
                problems.append("shard %s: %s" % (t, e))
        want = sorted("%08d.%s" % (i, e) for i in range(n) for e in ("png", "json"))
        if sorted(members) != want:
            problems.append("shard members: %d of %d, %d unique" % (len(members), len(want), len(set(members))))
    return problems


def pick_faults(rng, trials, net):
    """the kind of each trial: every kind once first (shuffled), then by weight"""
    kinds = {"kill": 0.25, "stop": 0.20, "partition": 0.20, "loss": 0.15, "delay": 0.20} if net else \
        {"kill": 0.5, "stop": 0.5}
    first = list(kinds)
    rng.shuffle(first)
    rest = rng.choices(list(kinds), weights=list(kinds.values()), k=max(0, trials - len(first)))
    return (first + rest)[:trials]


def inject(c, rng, kind):
    """one fault; returns the line that says what was done"""
    processes = ["coordinator", "coordinator"] + [n for n in c.procs if n != "coordinator"]
    if kind == "delay":
        name = rng.choice([n for n in RELAYED if n in c.procs] + [WAITER])
    else:
        name = rng.choice(processes)
    if kind in ("kill", "stop") and not c.alive(name):
        c.start(name)
    if kind == "kill":
        pause = rng.uniform(0.1, 1.0)
        os.kill(c.procs[name].pid, signal.SIGKILL)
        c.procs[name].wait()
        time.sleep(pause)
        c.start(name)
        return "SIGKILL %s, restarted after %.1f s" % (name, pause)
    if kind == "stop":
        pause = rng.uniform(0.3, 2.0)
        os.kill(c.procs[name].pid, signal.SIGSTOP)
        time.sleep(pause)
        os.kill(c.procs[name].pid, signal.SIGCONT)
        return "SIGSTOP %s for %.1f s" % (name, pause)
    if kind == "partition":
        pause = rng.uniform(0.5, 12.0)
        c.net.partition(name)
        time.sleep(pause)
        c.net.heal(name)
        return "partition %s for %.1f s" % ("the coordinator from every worker" if name == "coordinator" else name,
                                            pause)
    if kind == "loss":
        pause, percent = rng.uniform(2.0, 8.0), rng.randint(10, 50)
        c.net.loss(name, percent)
        time.sleep(pause)
        c.net.heal(name)
        return "loss of %d%% of %s's packets for %.1f s" % (percent, name, pause)
    pause, ms = rng.uniform(2.0, 8.0), rng.randint(50, 1500)
    c.set_delay(name, ms)
    time.sleep(pause)
    c.set_delay(name, 0)
    return "delay of %d ms on %s's traffic for %.1f s" % (ms, name, pause)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--model", default="build/models/sdxl-tiny-random")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--items", type=int, default=0,
                    help="items per job (two jobs: files and webdataset); default max(12, trials), so faults land on work")
    ap.add_argument("--no-net", action="store_true", help="process faults only, on loopback (no root needed)")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.items = a.items or max(12, a.trials)
    # `timeout` and the suite stop the campaign with SIGTERM: clean up as on any exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("chaos: stopped by SIGTERM"))
    if not a.no_net:
        why = netns.preflight()
        if why:
            print("chaos: " + why)
            return 1
    rng = random.Random(a.seed)
    root = tempfile.mkdtemp(prefix="sdxl-chaos-")
    os.chmod(root, 0o755)
    t0 = time.time()
    failed = True
    net = c = None
    try:
        net = None if a.no_net else netns.Net()
        c = Cluster(os.path.abspath(a.bin), os.path.abspath(a.model), root, 300, net)
        c.add_coordinator()
        for name, role in WORKERS:
            c.add_worker(name, role)
        prompts = os.path.join(root, "prompts.txt")
        with open(prompts, "w") as f:
            f.write("\n".join("prompt number %d, a small test" % i for i in range(a.items)) + "\n")
        jobs = []
        for layout in ("files", "webdataset"):
            out = os.path.join(root, "out-" + layout)
            deadline = time.time() + 30
            while True:  # the coordinator may still be starting
                r = c.cli("submit", prompts, "--out", out, "--steps", "6", "--layout", layout, "--shard-size", "5")
                if r.returncode == 0 or time.time() > deadline:
                    break
                time.sleep(0.5)
            if r.returncode != 0:
                print("chaos: submit failed: " + r.stderr.strip())
                return 1
            jobs.append((r.stdout.split()[-1], out, layout))
        # one client waits straight to the coordinator, one through the relay, the whole campaign
        # long: clients must ride out restarts, partitions and delay too
        waiters = [(job, c.waiter(job, 300 + 15 * a.trials, WAITER if i else None))
                   for i, (job, _, _) in enumerate(jobs)]
        kinds = pick_faults(rng, a.trials, net is not None)
        for trial, kind in enumerate(kinds, 1):
            time.sleep(rng.uniform(0.4, 1.2))
            print("trial %d: %s" % (trial, inject(c, rng, kind)), flush=True)
            if trial == a.trials // 2:  # a spare unet worker joins mid-campaign
                c.add_worker(*SPARE)
        # faults over: the network heals, everything runs again, every job must end
        if net:
            net.heal_all()
        for name in list(c.procs):
            if not c.alive(name):
                c.start(name)
        problems = []
        for job, out, layout in jobs:
            r = c.cli("wait", job, "--timeout", "180", timeout=240)
            if r.returncode != 0:
                problems.append("job %s (%s) did not end well: %s %s" % (job, layout, r.stdout.strip(), r.stderr.strip()[-400:]))
            st = c.cli("status", job, "--json")
            try:
                j = json.loads(st.stdout)
                if j.get("failed"):
                    problems.append("job %s: %d items failed (no item fails of its own here: a fault failed them): %s"
                                    % (job, j["failed"], j.get("failures")))
            except ValueError:
                problems.append("job %s: no status: %s" % (job, st.stderr.strip()))
            problems += ["job %s (%s): %s" % (job, layout, p) for p in check_job(out, layout, a.items)]
        for job, w in waiters:
            try:
                rc = w.wait(timeout=60)  # the job has ended: its waiter hears so within seconds
            except subprocess.TimeoutExpired:
                rc = "nothing (still running 60 s after the job ended)"
            if rc != 0:
                problems.append("the client waiting for job %s through the faults exited %s: %s" % (
                    job, rc, open(os.path.join(root, "wait-%s.log" % job)).read().strip()[-400:]))
        if c.relay and c.relay.poll() is not None:
            problems.append("the delay relay died (exit %s)" % c.relay.returncode)
        for p in problems:
            print("chaos: PROBLEM " + p)
        failed = bool(problems)
        counts = ", ".join("%d %s" % (kinds.count(k), k) for k in dict.fromkeys(kinds))
        print("chaos: %d trials (%s; seed %d), %d jobs, %d items, %.0f s: %s" % (
            a.trials, counts, a.seed, len(jobs), len(jobs) * a.items, time.time() - t0,
            "0 lost, 0 duplicated, 0 torn, 0 failed by faults, every job ended" if not failed else
            "%d problems (logs in %s)" % (len(problems), root)))
        return 1 if failed else 0
    finally:
        if c:
            c.stop_all()
        if net:
            net.close()
        if failed:
            print("chaos: logs kept in " + root)
        elif not a.keep:
            subprocess.run(["rm", "-rf", root])


if __name__ == "__main__":
    sys.exit(main())
