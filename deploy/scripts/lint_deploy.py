"""Static checks of the deployment files (run through lint-deploy.sh): YAML, the Kubernetes
objects (deploy/k8s: one vault gateway; deploy/k8s/postgres: three gateways on a CloudNativePG
cluster), the Dockerfile, the Grafana dashboards (JSON, and every metric they chart is one the
gateway's code emits), and the bare-metal HAProxy/keepalived examples.

Usage: lint_deploy.py REPO_ROOT. Prints one line per problem and exits 1 if there
is any. Needs PyYAML; tomllib (Python 3.11+) for the embedded gateway.toml.
"""

import json
import os
import pathlib
import re
import sys
import urllib.parse

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


# Secrets the CloudNativePG operator makes for a Cluster NAME, with their keys.
CNPG_SECRETS = {"-ca": {"ca.crt", "ca.key"}, "-replication": {"tls.crt", "tls.key"}}
CNPG_APP_KEYS = {"username", "password", "uri", "jdbc-uri", "host", "port", "dbname", "user"}


def check_k8s(root):
    k8s = root / "deploy" / "k8s"
    check_k8s_dir(k8s, "vault")
    check_k8s_dir(k8s / "postgres", "postgres")


def check_k8s_dir(k8s, profile):
    """One kustomization folder: profile "vault" (one gateway, its volumes) or "postgres" (the
    high-availability set on a CloudNativePG cluster)."""
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

    add_cnpg_secrets(resources)
    if not kustomization:
        problem(k8s, "no kustomization.yaml")
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
    configs = []
    for path, dep in deployments:
        configs += check_deployment(path, dep, resources)

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
    if profile == "vault":
        if not any(k == "PersistentVolumeClaim" for k, _ in resources):
            problem(k8s, "no PersistentVolumeClaim for the vault data")
    else:
        check_ha(k8s, resources, deployments, configs)


def add_cnpg_secrets(resources):
    """Adds the Secrets the CloudNativePG operator makes for each Cluster, so that volumes and
    environment variables may refer to them."""
    for (kind, name), (path, doc) in list(resources.items()):
        if kind != "Cluster" or not str(doc.get("apiVersion", "")).startswith("postgresql.cnpg.io/"):
            continue
        generated = {suffix: keys for suffix, keys in CNPG_SECRETS.items()}
        initdb = ((doc.get("spec") or {}).get("bootstrap") or {}).get("initdb") or {}
        if not (initdb.get("secret") or {}).get("name"):
            generated["-app"] = CNPG_APP_KEYS
        for suffix, keys in generated.items():
            resources.setdefault(
                ("Secret", name + suffix),
                (path, {"kind": "Secret", "data": {k: "" for k in keys}}),
            )


def check_ha(k8s, resources, deployments, configs):
    """Three gateways on PostgreSQL: replicas, one per node, a disruption budget that keeps two,
    no volume of their own, and a gateway.toml that reaches the CloudNativePG cluster's primary
    over verified TLS with the owner's password."""
    if any(k == "PersistentVolumeClaim" for k, _ in resources):
        problem(k8s, "a PersistentVolumeClaim: the gateways on PostgreSQL keep no state")
    clusters = {n: (p, d) for (k, n), (p, d) in resources.items() if k == "Cluster"}
    if len(clusters) != 1:
        problem(k8s, "needs exactly one CloudNativePG Cluster (postgresql.cnpg.io/v1)")
    for name, (path, cluster) in clusters.items():
        check_cnpg_cluster(path, name, cluster, resources)
    for path, dep in deployments:
        where = f"Deployment/{dep['metadata']['name']}"
        spec = dep.get("spec") or {}
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 3:
            problem(path, f"{where}: replicas must be at least 3")
        if (spec.get("strategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
            problem(path, f"{where}: strategy must be RollingUpdate (the gateways are stateless)")
        for vol in pod_spec(dep).get("volumes") or []:
            if "persistentVolumeClaim" in vol:
                problem(path, f"{where}: volume {vol.get('name')} is a PersistentVolumeClaim")
        anti = ((pod_spec(dep).get("affinity") or {}).get("podAntiAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or []
        if not any(
            term.get("topologyKey") == "kubernetes.io/hostname"
            and ((term.get("labelSelector") or {}).get("matchLabels") or {}).items()
            <= pod_labels(dep).items()
            and (term.get("labelSelector") or {}).get("matchLabels")
            for term in anti
        ):
            problem(path, f"{where}: needs a required podAntiAffinity on kubernetes.io/hostname "
                          "selecting its own pods (one gateway per node)")
        budgets = [
            (p, d) for (k, _), (p, d) in resources.items()
            if k == "PodDisruptionBudget"
            and (((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
            and (d["spec"]["selector"]["matchLabels"]).items() <= pod_labels(dep).items()
        ]
        if not budgets:
            problem(path, f"{where}: no PodDisruptionBudget selects its pods")
        for bpath, budget in budgets:
            least = (budget.get("spec") or {}).get("minAvailable")
            if not isinstance(least, int) or least < 2:
                problem(bpath, "PodDisruptionBudget: minAvailable must be at least 2")
            elif isinstance(replicas, int) and least >= replicas:
                problem(bpath, "PodDisruptionBudget: minAvailable must be below replicas, "
                               "or no node can ever be drained")
    for cm_path, name, config, container in configs:
        check_postgres_toml(cm_path, name, config, container, clusters, resources)


def check_cnpg_cluster(path, name, cluster, resources):
    where = f"Cluster/{name}"
    spec = cluster.get("spec") or {}
    if not isinstance(spec.get("instances"), int) or spec["instances"] < 3:
        problem(path, f"{where}: instances must be at least 3 (a primary, two standbys)")
    sync = (spec.get("postgresql") or {}).get("synchronous") or {}
    quorum = spec.get("minSyncReplicas", 0) if not sync else sync.get("number", 0)
    if not isinstance(quorum, int) or quorum < 1:
        problem(path, f"{where}: needs synchronous replication (minSyncReplicas: 1): an "
                      "acknowledged write must be on a standby before the answer")
    if sync and sync.get("dataDurability", "required") != "required":
        problem(path, f"{where}: synchronous.dataDurability must be required")
    params = (spec.get("postgresql") or {}).get("parameters") or {}
    if str(params.get("synchronous_commit", "on")) not in ("on", "remote_apply", "remote_write"):
        problem(path, f"{where}: synchronous_commit {params['synchronous_commit']!r} "
                      "acknowledges commits the standby may not have")
    initdb = (spec.get("bootstrap") or {}).get("initdb") or {}
    if not initdb.get("database") or not initdb.get("owner"):
        problem(path, f"{where}: bootstrap.initdb must name the database and its owner")
    secret = (initdb.get("secret") or {}).get("name")
    if secret:
        found = resources.get(("Secret", secret))
        if not found:
            problem(path, f"{where}: bootstrap secret {secret} is not defined")
        elif found[1].get("type") != "kubernetes.io/basic-auth" or not {
            "username", "password"
        } <= secret_keys(found[1]):
            problem(found[0], f"Secret/{secret}: must be kubernetes.io/basic-auth with "
                              "username and password (CloudNativePG's bootstrap secret)")
        elif (found[1].get("stringData") or {}).get("username", initdb.get("owner")) != initdb.get("owner"):
            problem(found[0], f"Secret/{secret}: username must be the owner {initdb.get('owner')}")


def check_postgres_toml(cm_path, name, config, container, clusters, resources):
    """[backend] of a gateway on PostgreSQL: the URL (no password; verified TLS; the Cluster's
    read-write Service, database and owner), the password and KEK from the container's Secrets."""
    where = f"{name} [backend]"
    backend = config.get("backend") or {}
    if backend.get("kind") != "postgres":
        problem(cm_path, f"{where}: kind must be \"postgres\"")
        return
    url = urllib.parse.urlsplit(str(backend.get("url", "")))
    if url.scheme not in ("postgresql", "postgres"):
        problem(cm_path, f"{where}: url must be a postgresql:// URI")
        return
    if url.password is not None:
        problem(cm_path, f"{where}: url carries a password; use password_env or password_file")
    query = urllib.parse.parse_qs(url.query)
    if query.get("sslmode") != ["verify-full"]:
        problem(cm_path, f"{where}: url needs sslmode=verify-full (the server's certificate "
                         "checked against `ca`, and its name)")
    if not backend.get("ca"):
        problem(cm_path, f"{where}: ca (the database server's CA) must be set")
    hosts = [h.rsplit(":", 1)[0] for h in url.netloc.rsplit("@", 1)[-1].split(",")]
    database = url.path.lstrip("/")
    env = {e.get("name"): e for e in container.get("env") or []}
    for cname, (_, cluster) in clusters.items():
        if hosts != [f"{cname}-rw"]:
            problem(cm_path, f"{where}: url must name {cname}-rw (the primary's Service), "
                             f"not {','.join(hosts)}")
        initdb = ((cluster.get("spec") or {}).get("bootstrap") or {}).get("initdb") or {}
        if database != initdb.get("database") or url.username != initdb.get("owner"):
            problem(cm_path, f"{where}: url's user/database {url.username}/{database} are not "
                             f"the Cluster's owner/database")
        secret = (initdb.get("secret") or {}).get("name") or f"{cname}-app"
        ref = ((env.get(backend.get("password_env")) or {}).get("valueFrom") or {}).get(
            "secretKeyRef") or {}
        if backend.get("password_env") and (ref.get("name"), ref.get("key")) != (secret, "password"):
            problem(cm_path, f"{where}: password_env must come from the Secret {secret} "
                             "(key password), the owner's password")
    if not backend.get("password_env") and not backend.get("password_file"):
        problem(cm_path, f"{where}: password_env or password_file must be set")
    kek = backend.get("kek") or {}
    if kek.get("kind") not in ("file", "pkcs11"):
        problem(cm_path, f"{where}: [backend.kek] kind must be \"file\" or \"pkcs11\"")
    for key in ("password_env",):
        if backend.get(key) and backend[key] not in env:
            problem(cm_path, f"{where}: {key} {backend[key]} is not set in the container")
    for key in ("env", "pin_env"):
        if kek.get(key) and kek[key] not in env:
            problem(cm_path, f"{where}: [backend.kek] {key} {kek[key]} is not set in the container")
    if kek.get("kind") == "file" and not kek.get("env") and not kek.get("file"):
        problem(cm_path, f"{where}: [backend.kek] needs env or file")


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
    """Checks a Deployment; returns (ConfigMap path, file name, parsed gateway.toml, container)
    of each container whose configuration parsed."""
    configs = []
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
        config = check_gateway_toml(path, c, volumes, resources)
        if config:
            configs.append((*config, c))
    return configs


def secret_keys(secret):
    return set((secret.get("stringData") or {}).keys()) | set((secret.get("data") or {}).keys())


def check_gateway_toml(path, container, volumes, resources):
    """The config the container is started with parses, and its files are mounted. Returns
    (ConfigMap path, file name, parsed config), or None."""
    try:
        import tomllib
    except ImportError:
        print(f"{path}: note: Python < 3.11, gateway.toml not parsed", file=sys.stderr)
        return None
    args = container.get("args") or []
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        problem(path, "container args give no --config")
        return None
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
        return None
    try:
        config = tomllib.loads(cm[1]["data"][name])
    except tomllib.TOMLDecodeError as e:
        problem(cm[0], f"{name} is not valid TOML: {e}")
        return None
    files = [(config.get("tls") or {}).get("cert"), (config.get("tls") or {}).get("key")]
    files += [ca for user in config.get("users") or [] for ca in user.get("cas") or []]
    # The database server's CA (postgres backend).
    files += [f for f in [(config.get("backend") or {}).get("ca")] if f]
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
    return cm[0], name, config


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


def haproxy_sections(text):
    """{(section, name): [lines]} of an haproxy.cfg, comments dropped."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        words = line.split()
        if not raw[0].isspace():
            current = (words[0], words[1] if len(words) > 1 else "")
            sections[current] = []
        elif current:
            sections[current].append(words)
    return sections


def check_haproxy(root):
    """TCP passthrough of KMIP (no TLS termination), health from /readyz on the admin port."""
    path = root / "deploy" / "haproxy" / "haproxy.cfg"
    if not path.is_file():
        problem(path, "missing")
        return
    sections = haproxy_sections(path.read_text())
    kmip = [k for k, lines in sections.items() if k[0] in ("frontend", "listen") and any(
        w[0] == "bind" and any(p.endswith(":5696") for p in w[1:2]) for w in lines)]
    if not kmip:
        problem(path, "no frontend binds port 5696")
    backends = {k[1]: lines for k, lines in sections.items() if k[0] == "backend"}
    for key in kmip:
        lines = sections[key]
        default_mode = next((w[1] for k, ls in sections.items() if k[0] == "defaults"
                             for w in ls if w[0] == "mode"), "")
        used = [w[1] for w in lines if w[0] == "default_backend"]
        for section_lines, where in [(lines, f"{key[0]} {key[1]}")] + [
            (backends.get(b, []), f"backend {b}") for b in used
        ]:
            mode = next((w[1] for w in section_lines if w[0] == "mode"), default_mode)
            if mode != "tcp":
                problem(path, f"{where}: mode must be tcp (passthrough: the mutual TLS reaches "
                              "the gateways unbroken)")
            for w in section_lines:
                if w[0] in ("bind", "server") and {"ssl", "crt"} & set(w):
                    problem(path, f"{where}: {' '.join(w[:2])} terminates TLS; KMIP must pass "
                                  "through")
        for b in used:
            blines = backends.get(b)
            if blines is None:
                problem(path, f"{key[0]} {key[1]}: backend {b} is not defined")
                continue
            if not any(w[:2] == ["option", "httpchk"] for w in blines):
                problem(path, f"backend {b}: needs option httpchk (health over HTTP)")
            send = [w for w in blines if w[:2] == ["http-check", "send"]]
            if not any("/readyz" in w for w in send):
                problem(path, f"backend {b}: http-check send must GET /readyz")
            if not any("Host" in w for w in send):
                problem(path, f"backend {b}: http-check send needs a Host header the admin "
                              "listener accepts (localhost)")
            servers = [w for w in blines if w[0] == "server"]
            if len(servers) < 2:
                problem(path, f"backend {b}: fewer than two gateways")
            for w in servers:
                at = w.index("port") + 1 if "port" in w else len(w)
                if "check" not in w or w[at:at + 1] != ["9696"]:
                    problem(path, f"backend {b}: server {w[1]} needs `check port 9696` (the "
                                  "admin listener's /readyz)")


def check_keepalived(root):
    """A virtual IP that follows the haproxy process."""
    path = root / "deploy" / "keepalived" / "keepalived.conf"
    if not path.is_file():
        problem(path, "missing")
        return
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    if text.count("{") != text.count("}"):
        problem(path, "unbalanced braces")
    if "vrrp_instance" not in text or "virtual_ipaddress" not in text:
        problem(path, "needs a vrrp_instance with a virtual_ipaddress")
    tracks = re.search(r"vrrp_track_process\s+(\S+)\s*\{[^}]*\bprocess\s+haproxy\b", text)
    if not tracks:
        problem(path, "needs a vrrp_track_process of haproxy")
    elif not re.search(r"track_process\s*\{\s*" + re.escape(tracks.group(1)) + r"\b", text):
        problem(path, f"the vrrp_instance does not track_process {tracks.group(1)}")


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    k8s = root / "deploy" / "k8s"
    for path in sorted((root / "deploy").rglob("*.y*ml")):
        if k8s not in path.parents:
            load_yaml_docs(path)
    check_k8s(root)
    check_dockerfile(root)
    check_grafana(root)
    check_haproxy(root)
    check_keepalived(root)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
