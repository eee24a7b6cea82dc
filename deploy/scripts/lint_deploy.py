"""Static checks of the deployment files (run through lint-deploy.sh): YAML, the Kubernetes
objects, the Dockerfile, and the Grafana dashboards (JSON, and every metric they chart is one the
gateway's code emits).

Usage: lint_deploy.py REPO_ROOT. Prints one line per problem and exits 1 if there
is any. Needs PyYAML; tomllib (Python 3.11+) for the embedded gateway.toml.
"""

import json
import os
import pathlib
import re
import sys

import yaml

problems = []


def problem(path, message):
    problems.append(f"{path}: {message}")


def load_yaml_docs(path):
    try:
        with path.open() as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        problem(path, f"invalid YAML: {e}")
        return []


def check_k8s(root):
    k8s = root / "deploy" / "k8s"
    if not k8s.is_dir():
        problem(k8s, "missing")
        return
    resources = {}  # (kind, name) -> (path, doc)
    kustomization = None
    for path in sorted(k8s.glob("*.y*ml")):
        for doc in load_yaml_docs(path):
            if not isinstance(doc, dict):
                problem(path, "a document is not a mapping")
                continue
            if doc.get("kind") == "Kustomization":
                kustomization = (path, doc)
                continue
            name = (doc.get("metadata") or {}).get("name")
            if not doc.get("apiVersion") or not doc.get("kind") or not name:
                problem(path, "a document lacks apiVersion, kind or metadata.name")
                continue
            key = (doc["kind"], name)
            if key in resources:
                problem(path, f"{doc['kind']}/{name} defined twice")
            resources[key] = (path, doc)

    if kustomization:
        path, doc = kustomization
        listed = set(doc.get("resources") or [])
        for entry in listed:
            if not (k8s / entry).is_file():
                problem(path, f"lists {entry}, which does not exist")
        for other in k8s.glob("*.y*ml"):
            if other != path and other.name not in listed:
                problem(path, f"does not list {other.name}")

    deployments = [(p, d) for (k, _), (p, d) in resources.items() if k == "Deployment"]
    if not deployments:
        problem(k8s, "no Deployment")
    for path, dep in deployments:
        check_deployment(path, dep, resources)

    for (kind, name), (path, svc) in resources.items():
        if kind != "Service":
            continue
        selector = (svc.get("spec") or {}).get("selector") or {}
        targets = [
            d for _, d in deployments
            if selector and selector.items() <= pod_labels(d).items()
        ]
        if not targets:
            problem(path, f"Service/{name} selects no Deployment's pods")
        port_names = {p.get("name") for d in targets for p in container_ports(d)}
        port_numbers = {p.get("containerPort") for d in targets for p in container_ports(d)}
        for port in (svc.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if target not in port_names and target not in port_numbers:
                problem(path, f"Service/{name} targets port {target!r}, which no container exposes")

    check_network_policies(k8s, resources, deployments)

    services = {n: d for (k, n), (_, d) in resources.items() if k == "Service"}
    if not any(
        p.get("port") == 5696 for s in services.values() for p in s["spec"].get("ports", [])
    ):
        problem(k8s, "no Service exposes port 5696")
    if not any(k == "PersistentVolumeClaim" for k, _ in resources):
        problem(k8s, "no PersistentVolumeClaim for the vault data")


def check_network_policies(k8s, resources, deployments):
    """A NetworkPolicy selects the gateway's pods, admits KMIP, and admits the admin port only
    from named sources; every port it names is a container port."""
    policies = [(p, n, d) for (k, n), (p, d) in resources.items() if k == "NetworkPolicy"]
    if not policies:
        problem(k8s, "no NetworkPolicy: any pod could reach the admin listener")
    for path, name, pol in policies:
        where = f"NetworkPolicy/{name}"
        spec = pol.get("spec") or {}
        selector = (spec.get("podSelector") or {}).get("matchLabels") or {}
        targets = [
            d for _, d in deployments if selector and selector.items() <= pod_labels(d).items()
        ]
        if not targets:
            problem(path, f"{where} selects no Deployment's pods")
            continue
        if "Ingress" not in (spec.get("policyTypes") or []):
            problem(path, f"{where}: policyTypes must include Ingress")
        by_name = {p.get("name"): p.get("containerPort") for d in targets for p in container_ports(d)}
        numbers = set(by_name.values())
        admitted = {}  # container port number -> whether some rule admits it from anywhere
        for rule in spec.get("ingress") or []:
            open_rule = not rule.get("from")
            for port in rule.get("ports") or []:
                ref = port.get("port")
                number = by_name.get(ref, ref)
                if number not in numbers:
                    problem(path, f"{where}: port {ref!r} is no container port")
                    continue
                admitted[number] = admitted.get(number, False) or open_rule
        if 5696 not in admitted:
            problem(path, f"{where}: does not admit the KMIP port 5696")
        if admitted.get(9696):
            problem(path, f"{where}: admits the admin port 9696 from anywhere")


def pod_spec(dep):
    return ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(dep):
    return (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}


def container_ports(dep):
    return [p for c in pod_spec(dep).get("containers") or [] for p in c.get("ports") or []]


def check_deployment(path, dep, resources):
    name = dep["metadata"]["name"]
    where = f"Deployment/{name}"
    match = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not match or not match.items() <= pod_labels(dep).items():
        problem(path, f"{where}: selector.matchLabels do not match the pod labels")
    spec = pod_spec(dep)
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for vol_name, vol in volumes.items():
        for field, kind, ref in (
            ("configMap", "ConfigMap", "name"),
            ("secret", "Secret", "secretName"),
            ("persistentVolumeClaim", "PersistentVolumeClaim", "claimName"),
        ):
            if field in vol and (kind, vol[field].get(ref)) not in resources:
                problem(path, f"{where}: volume {vol_name} refers to a missing {kind}")
    containers = spec.get("containers") or []
    if not containers:
        problem(path, f"{where}: no containers")
    for c in containers:
        cname = f"{where} container {c.get('name')}"
        ports = {p.get("name") for p in c.get("ports") or []} | {
            p.get("containerPort") for p in c.get("ports") or []
        }
        if 5696 not in ports:
            problem(path, f"{cname}: does not expose 5696")
        for probe, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != want:
                problem(path, f"{cname}: {probe} must GET {want}")
            if get.get("port") not in ports:
                problem(path, f"{cname}: {probe} port {get.get('port')!r} is not a container port")
        for mount in c.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                problem(path, f"{cname}: mounts unknown volume {mount.get('name')}")
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secret = resources.get(("Secret", ref.get("name")))
                if not secret:
                    problem(path, f"{cname}: env {env.get('name')} refers to a missing Secret")
                elif ref.get("key") not in secret_keys(secret[1]):
                    problem(path, f"{cname}: env {env.get('name')} refers to a missing key")
        security = c.get("securityContext") or {}
        if security.get("allowPrivilegeEscalation") is not False:
            problem(path, f"{cname}: allowPrivilegeEscalation must be false")
        if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
            problem(path, f"{where}: pod securityContext must set runAsNonRoot")
        check_gateway_toml(path, c, volumes, resources)


def secret_keys(secret):
    return set((secret.get("stringData") or {}).keys()) | set((secret.get("data") or {}).keys())


def check_gateway_toml(path, container, volumes, resources):
    """The config the container is started with parses, and its files are mounted."""
    try:
        import tomllib
    except ImportError:
        print(f"{path}: note: Python < 3.11, gateway.toml not parsed", file=sys.stderr)
        return
    args = container.get("args") or []
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        problem(path, "container args give no --config")
        return
    config_path = pathlib.PurePosixPath(args[args.index("--config") + 1])
    mounts = {}
    for mount in container.get("volumeMounts") or []:
        vol = volumes.get(mount.get("name")) or {}
        mounts[pathlib.PurePosixPath(mount.get("mountPath", "/"))] = vol

    def source_of(file_path):
        """(volume, file name within it) of the deepest mount holding file_path."""
        best = None
        for mount_path, vol in mounts.items():
            if file_path.parent == mount_path and (
                best is None or len(mount_path.parts) > len(best[0].parts)
            ):
                best = (mount_path, vol)
        return (best[1], file_path.name) if best else (None, None)

    vol, name = source_of(config_path)
    cm = resources.get(("ConfigMap", ((vol or {}).get("configMap") or {}).get("name")))
    if not cm or name not in (cm[1].get("data") or {}):
        problem(path, f"{config_path} is not provided by a mounted ConfigMap")
        return
    try:
        config = tomllib.loads(cm[1]["data"][name])
    except tomllib.TOMLDecodeError as e:
        problem(cm[0], f"{name} is not valid TOML: {e}")
        return
    files = [(config.get("tls") or {}).get("cert"), (config.get("tls") or {}).get("key")]
    files += [ca for user in config.get("users") or [] for ca in user.get("cas") or []]
    for f in files:
        if not f:
            problem(cm[0], f"{name}: tls.cert, tls.key and users[].cas must be set")
            continue
        vol, fname = source_of(pathlib.PurePosixPath(f))
        secret = resources.get(("Secret", ((vol or {}).get("secret") or {}).get("secretName")))
        if not secret or fname not in secret_keys(secret[1]):
            problem(cm[0], f"{name}: {f} is not provided by a mounted Secret")
    env_name = (config.get("backend") or {}).get("master_key_env")
    if env_name and env_name not in {e.get("name") for e in container.get("env") or []}:
        problem(cm[0], f"{name}: master_key_env {env_name} is not set in the container")
    for key in ("listen",):
        if not str(config.get(key, "")).startswith("0.0.0.0:"):
            problem(cm[0], f"{name}: {key} must bind 0.0.0.0 inside a pod")
    if not str((config.get("admin") or {}).get("listen", "")).startswith("0.0.0.0:"):
        problem(cm[0], f"{name}: admin.listen must bind 0.0.0.0 for the kubelet probes")


def dockerfile_instructions(path):
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    if current:
        problem(path, "ends inside a continued line")
    return out


def check_dockerfile(root):
    path = root / "deploy" / "docker" / "Dockerfile"
    if not path.is_file():
        problem(path, "missing")
        return
    known = {
        "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
        "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
    }
    instructions = dockerfile_instructions(path)
    for word, _ in instructions:
        if word not in known:
            problem(path, f"unknown instruction {word}")
    froms = [i for i, (w, _) in enumerate(instructions) if w == "FROM"]
    if not froms or any(w not in ("ARG",) for w, _ in instructions[: froms[0]]):
        problem(path, "must start with FROM (only ARG may precede it)")
        return
    if len(froms) < 2:
        problem(path, "must be multi-stage (a builder and a runtime stage)")
    final = instructions[froms[-1]:]
    users = [a for w, a in final if w == "USER"]
    if not users:
        problem(path, "the final stage sets no USER")
    elif users[-1].split(":")[0] in ("root", "0"):
        problem(path, "the final stage runs as root")
    for word in ("ENTRYPOINT", "HEALTHCHECK"):
        if not any(w == word for w, _ in final):
            problem(path, f"the final stage has no {word}")
    if not any(w == "EXPOSE" and "5696" in a.split() for w, a in final):
        problem(path, "the final stage does not EXPOSE 5696")
    for word, args in final:
        exec_form = args
        if word == "HEALTHCHECK":
            exec_form = re.sub(r"^(--\S+\s+)*CMD\s+", "", args)
        if word in ("ENTRYPOINT", "CMD", "HEALTHCHECK") and exec_form.startswith("["):
            try:
                value = json.loads(exec_form)
            except json.JSONDecodeError as e:
                problem(path, f"{word} exec form is not a JSON array: {e}")
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problem(path, f"{word} exec form must be an array of strings")


METRIC_MACRO = re.compile(r'metrics::(?:counter|gauge|histogram)!\(\s*"([a-z0-9_]+)"')
BUCKETED = re.compile(r'Matcher::Full\(\s*"([a-z0-9_]+)"')
METRIC_IN_QUERY = re.compile(r"\b(kmip_[a-z0-9_]+)\b")
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def emitted_metrics(root):
    """(metric names the Rust code emits, names exported as bucketed histograms)."""
    names, bucketed = set(), set()
    for crate in ("gateway", "backends", "policy"):
        for folder, dirs, files in os.walk(root / crate):
            # Build output (gateway/fuzz/target is gigabytes) holds no sources.
            dirs[:] = [d for d in dirs if d != "target"]
            for name in files:
                if name.endswith(".rs"):
                    text = (pathlib.Path(folder) / name).read_text(errors="replace")
                    names.update(METRIC_MACRO.findall(text))
                    bucketed.update(BUCKETED.findall(text))
    return names, bucketed


def dashboard_queries(dash):
    """(panel title, query) of every panel target and query variable, nested rows included."""
    out = []

    def panels(items):
        for p in items or []:
            for t in p.get("targets") or []:
                if "expr" not in t:
                    problem(GRAFANA, f"panel {p.get('title')!r}: a target has no expr")
                out.append((p.get("title"), t.get("expr", "")))
            panels(p.get("panels"))

    panels(dash.get("panels"))
    for var in (dash.get("templating") or {}).get("list") or []:
        if var.get("type") == "query":
            q = var.get("query")
            out.append((f"${var.get('name')}", q.get("query", "") if isinstance(q, dict) else q or ""))
    return out


GRAFANA = "deploy/grafana"


def check_grafana(root):
    """Dashboards parse, and chart only metrics the gateway emits (histogram series only of
    metrics exported with buckets)."""
    files = sorted((root / "deploy" / "grafana").glob("*.json"))
    if not files:
        problem(root / GRAFANA, "no dashboard")
        return
    emitted, bucketed = emitted_metrics(root)
    if not emitted:
        problem(root / GRAFANA, "found no metrics::counter!/gauge!/histogram! in the code")
        return
    charted = set()
    for path in files:
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problem(path, f"invalid JSON: {e}")
            continue
        for key in ("title", "uid", "panels"):
            if not dash.get(key):
                problem(path, f"no {key}")
        ids = []

        def collect_ids(items):
            for p in items or []:
                ids.append(p.get("id"))
                collect_ids(p.get("panels"))

        collect_ids(dash.get("panels"))
        if len(ids) != len(set(ids)) or None in ids:
            problem(path, "panel ids missing or not unique")
        for title, expr in dashboard_queries(dash):
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                problem(path, f"panel {title!r}: unbalanced brackets in {expr}")
            for name in METRIC_IN_QUERY.findall(expr):
                base = name
                for suffix in HISTOGRAM_SERIES:
                    if name.endswith(suffix) and name[: -len(suffix)] in emitted:
                        base = name[: -len(suffix)]
                        if suffix == "_bucket" and base not in bucketed:
                            problem(path, f"panel {title!r}: {name}, but {base} is exported "
                                          "as a summary (no buckets)")
                if base not in emitted:
                    problem(path, f"panel {title!r}: {name} is not emitted by the code")
                charted.add(base)
    uncharted = sorted(emitted - charted)
    if uncharted:
        print(f"{GRAFANA}: note: not charted: {', '.join(uncharted)}", file=sys.stderr)


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    k8s = root / "deploy" / "k8s"
    for path in sorted((root / "deploy").rglob("*.y*ml")):
        if k8s not in path.parents:
            load_yaml_docs(path)
    check_k8s(root)
    check_dockerfile(root)
    check_grafana(root)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
