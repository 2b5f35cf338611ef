#!/usr/bin/env python3
"""Fault campaign against a real local cluster (tests/cluster/chaos).

Injector: a coordinator and five workers (1 text, 2 unet, 1 final, 1 spare
unet started later) on loopback, running jobs; every 0.4-1.2 s one process
is picked (the coordinator at double weight) and either SIGKILLed and
restarted after a pause, or SIGSTOPped and continued after 0.3-2 s. One
fault is one trial.

Checker, once the faults stop and every process runs again: every job ends;
each item exists exactly once (files: one image and one JSON per key and
one metadata.jsonl line; WebDataset: each member once over the shards); no
torn file (every PNG ends with its IEND chunk, every tar reads to its end);
no temp or staged file left; and no item failed, since nothing in this
campaign fails of its own: any failure is one caused by a fault.

Not covered here (see the notes): network partitions, loss and delay
between network namespaces.

  chaos.py --bin build/bin --model build/models/sdxl-tiny-random --trials 20 --seed 1
Prints one line per fault and ends with 'chaos: ...' and exit 0 when clean.
"""
import argparse, json, os, random, signal, socket, subprocess, sys, tarfile, tempfile, time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Cluster:
    def __init__(self, bin_dir, model, root, hb):
        self.bin, self.model, self.root, self.hb = bin_dir, model, root, hb
        self.ep = "tcp://127.0.0.1:%d" % free_port()
        self.procs = {}  # name -> Popen
        self.specs = {}  # name -> argv
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.env = env

    def start(self, name):
        log = open(os.path.join(self.root, name + ".log"), "a")
        self.procs[name] = subprocess.Popen(self.specs[name], stdout=log, stderr=log, env=self.env)

    def add_coordinator(self):
        self.specs["coordinator"] = [os.path.join(self.bin, "sdxl-coordinator"), "--bind", self.ep, "--state",
                                     os.path.join(self.root, "state"), "--heartbeat-ms", str(self.hb),
                                     "--progress-timeout-ms", "4000"]
        self.start("coordinator")

    def add_worker(self, name, role):
        self.specs[name] = [os.path.join(self.bin, "sdxl-worker"), "--coordinator", self.ep, "--role", role,
                            "--model", self.model, "--heartbeat-ms", str(self.hb), "--id", name]
        self.start(name)

    def alive(self, name):
        return self.procs[name].poll() is None

    def cli(self, *args, timeout=60):
        return subprocess.run([os.path.join(self.bin, "sdxl")] + list(args) + ["--coordinator", self.ep],
                              capture_output=True, text=True, timeout=timeout)

    def stop_all(self):
        for p in self.procs.values():
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--model", default="build/models/sdxl-tiny-random")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--items", type=int, default=0,
                    help="items per job (two jobs: files and webdataset); default max(12, trials), so faults land on work")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.items = a.items or max(12, a.trials)
    rng = random.Random(a.seed)
    root = tempfile.mkdtemp(prefix="sdxl-chaos-")
    c = Cluster(os.path.abspath(a.bin), a.model, root, 300)
    t0 = time.time()
    failed = False
    try:
        c.add_coordinator()
        for name, role in (("t1", "text"), ("u1", "unet"), ("u2", "unet"), ("f1", "final")):
            c.add_worker(name, role)
        prompts = os.path.join(root, "prompts.txt")
        with open(prompts, "w") as f:
            f.write("\n".join("prompt number %d, a small test" % i for i in range(a.items)) + "\n")
        jobs = []
        for layout in ("files", "webdataset"):
            out = os.path.join(root, "out-" + layout)
            deadline = time.time() + 30
            while True:  # the coordinator may be between a kill and its restart
                r = c.cli("submit", prompts, "--out", out, "--steps", "6", "--layout", layout, "--shard-size", "5")
                if r.returncode == 0 or time.time() > deadline:
                    break
                time.sleep(0.5)
            if r.returncode != 0:
                print("chaos: submit failed: " + r.stderr.strip())
                return 1
            jobs.append((r.stdout.split()[-1], out, layout))
        names = ["coordinator", "coordinator", "t1", "u1", "u2", "f1"]
        for trial in range(1, a.trials + 1):
            time.sleep(rng.uniform(0.4, 1.2))
            name = rng.choice(names)
            p = c.procs[name]
            if p.poll() is not None:
                c.start(name)
            if rng.random() < 0.5:
                pause = rng.uniform(0.1, 1.0)
                os.kill(c.procs[name].pid, signal.SIGKILL)
                c.procs[name].wait()
                time.sleep(pause)
                c.start(name)
                print("trial %d: SIGKILL %s, restarted after %.1f s" % (trial, name, pause), flush=True)
            else:
                pause = rng.uniform(0.3, 2.0)
                os.kill(c.procs[name].pid, signal.SIGSTOP)
                time.sleep(pause)
                os.kill(c.procs[name].pid, signal.SIGCONT)
                print("trial %d: SIGSTOP %s for %.1f s" % (trial, name, pause), flush=True)
            if trial == a.trials // 2:  # a spare unet worker joins mid-campaign
                c.add_worker("u3", "unet")
        # faults over: everything runs again, every job must end
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
        for p in problems:
            print("chaos: PROBLEM " + p)
        failed = bool(problems)
        print("chaos: %d trials (seed %d), %d jobs, %d items, %.0f s: %s" % (
            a.trials, a.seed, len(jobs), len(jobs) * a.items, time.time() - t0,
            "0 lost, 0 duplicated, 0 torn, 0 failed by faults, every job ended" if not failed else
            "%d problems (logs in %s)" % (len(problems), root)))
        return 1 if failed else 0
    finally:
        c.stop_all()
        if not a.keep and not failed:
            subprocess.run(["rm", "-rf", root])


if __name__ == "__main__":
    sys.exit(main())
