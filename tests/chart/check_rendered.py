#!/usr/bin/env python3
"""Assertions on `helm template` output of charts/atlas-encryption-operator.

    check_rendered.py SCENARIO RENDERED.yaml

SCENARIO is one of the value sets of tests/chart/run.sh (default, namespaced-ha, monitoring-irsa,
single-leader). Each check prints one `ok:` line; the first failed one exits 1 with the reason.
Also usable as a filter for the in-cluster stage:

    check_rendered.py --kinds ServiceAccount,Role,... RENDERED.yaml   # print only those objects
    check_rendered.py --set-namespace NS FILE.yaml                    # move namespaced objects to NS
"""

import sys

import yaml

from checks import PASSED, check, fail, load

RELEASE_NS = "aeo-system"
GROUP = "encryption.atlasops.dev"
CRD_KINDS = {"projectencryptions", "clusterencryptions"}


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = of_kind(docs, kind)
    if len(found) != 1:
        fail(f"expected exactly one {kind}, found {len(found)}")
    return found[0]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name):
    e = env_of(container).get(name)
    return None if e is None else e.get("value")


def rules_touching_group(role, group):
    return [r for r in role.get("rules", []) if group in r.get("apiGroups", [])]


def grants(role, group, resource, verb, name=None):
    for r in role.get("rules", []):
        if group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r.get("verbs", []):
            names = r.get("resourceNames")
            if not names or name in names:
                return True
    return False


def check_common(docs):
    """What every value set must satisfy."""
    for d in docs:
        check("apiVersion" in d and "kind" in d and d["metadata"].get("name"),
              f"{d.get('kind')}/{d['metadata'].get('name')} is a well-formed object")
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    psc, csc = pod["securityContext"], c["securityContext"]
    check(psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532 and psc["fsGroup"] == 65532,
          "pod runs as non-root uid 65532 with fsGroup")
    check(psc["seccompProfile"] == {"type": "RuntimeDefault"}, "pod seccompProfile is RuntimeDefault")
    check(csc["readOnlyRootFilesystem"] is True, "container root filesystem is read-only")
    check(csc["allowPrivilegeEscalation"] is False, "container disallows privilege escalation")
    check(csc["capabilities"]["drop"] == ["ALL"] and not csc["capabilities"].get("add"),
          "container drops ALL capabilities and adds none")
    check(pod["automountServiceAccountToken"] is True, "the operator pod mounts its API token")
    check(pod["terminationGracePeriodSeconds"] == 30, "terminationGracePeriodSeconds is 30")
    res = c["resources"]
    check(res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"],
          "container has cpu/memory requests and a memory limit")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports == {"metrics": 8080, "health": 8081}, "ports metrics 8080 and health 8081")
    check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}, "liveness probe GET /healthz")
    check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}, "readiness probe GET /readyz")
    check(c.get("command") is None and c.get("args") is None, "the image runs with no args")
    env = env_of(c)
    for name in ["WATCH_NAMESPACES", "RESYNC_PERIOD", "CONCURRENCY", "LOG_FORMAT", "LOG_LEVEL",
                 "METRICS_BIND_ADDRESS", "HEALTH_BIND_ADDRESS", "LEADER_ELECT", "POD_NAME",
                 "POD_NAMESPACE", "ATLAS_BASE_URL", "ATLAS_BURST",
                 "ATLAS_TIMEOUT", "KMS_PREFLIGHT"]:
        check(name in env, f"env {name} is set")
    for name, e in env.items():
        check("valueFrom" in e or isinstance(e.get("value"), str), f"env {name} is a string or valueFrom")
    check(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", "POD_NAME from the downward API")
    check(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace",
          "POD_NAMESPACE from the downward API")
    check(env["METRICS_BIND_ADDRESS"]["value"] == "0.0.0.0:8080", "METRICS_BIND_ADDRESS 0.0.0.0:8080")
    check(env["HEALTH_BIND_ADDRESS"]["value"] == "0.0.0.0:8081", "HEALTH_BIND_ADDRESS 0.0.0.0:8081")
    check(env["LEADER_ELECT"]["value"] in ("true", "false"), "LEADER_ELECT is true or false")

    sa = one(docs, "ServiceAccount")
    check(pod["serviceAccountName"] == sa["metadata"]["name"], "the pod uses the chart's ServiceAccount")
    sel = deploy["spec"]["selector"]["matchLabels"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in sel.items()), "pod labels match the Deployment selector")

    svc = [s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    check(len(svc) == 1 and svc[0]["spec"]["ports"][0]["targetPort"] == "metrics"
          and svc[0]["spec"]["selector"] == sel, "metrics Service selects the pods' metrics port")

    # Least privilege, wherever the rules are.
    roles = of_kind(docs, "Role") + of_kind(docs, "ClusterRole")
    for role in roles:
        where = f"{role['kind']}/{role['metadata']['name']}"
        for r in role["rules"]:
            check("*" not in r.get("verbs", []) and "*" not in r.get("resources", [])
                  and "*" not in r.get("apiGroups", []), f"{where}: no wildcards")
            if "" in r.get("apiGroups", []):
                check(set(r["resources"]) == {"secrets"} and r["verbs"] == ["get"],
                      f"{where}: the only core access is get secrets")
            if GROUP in r.get("apiGroups", []):
                check("delete" not in r["verbs"] and "create" not in r["verbs"] and "update" not in r["verbs"],
                      f"{where}: never create, update or delete {GROUP} objects")
            if "events.k8s.io" in r.get("apiGroups", []):
                check(r["resources"] == ["events"] and sorted(r["verbs"]) == ["create", "patch"],
                      f"{where}: events.k8s.io events create, patch")
    bindings = of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding")
    role_names = {(r["kind"], r["metadata"]["name"], r["metadata"].get("namespace")) for r in roles}
    for b in bindings:
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
        check((ref["kind"], ref["name"], ns) in role_names, f"{b['kind']}/{b['metadata']['name']} binds a rendered role")
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": RELEASE_NS}],
              f"{b['kind']}/{b['metadata']['name']} binds only the operator ServiceAccount")
    return deploy, c


def lease_roles(docs):
    return [r for r in of_kind(docs, "Role") if rules_touching_group(r, "coordination.k8s.io")]


def scenario_default(docs):
    deploy, c = check_common(docs)
    check(deploy["spec"]["replicas"] == 1, "one replica by default")
    check(env_value(c, "LEADER_ELECT") == "false", "one replica: LEADER_ELECT=false")
    check(deploy["spec"]["strategy"]["type"] == "Recreate", "without a Lease the rollout is Recreate (never two writers)")
    check(env_value(c, "WATCH_NAMESPACES") == "", "cluster-wide mode: WATCH_NAMESPACES empty")
    check(not lease_roles(docs), "no Lease Role without leader election")
    check(not of_kind(docs, "PodDisruptionBudget"), "no PDB with one replica")
    (cr,) = of_kind(docs, "ClusterRole")
    check(grants(cr, GROUP, "projectencryptions", "watch") and grants(cr, GROUP, "clusterencryptions", "patch"),
          "ClusterRole: watch and patch the CRD kinds")
    check(grants(cr, GROUP, "projectencryptions/status", "patch") and grants(cr, GROUP, "clusterencryptions/status", "get"),
          "ClusterRole: get/patch the status subresources")
    check(grants(cr, "", "secrets", "get") and not grants(cr, "", "secrets", "list")
          and not grants(cr, "", "secrets", "watch"), "ClusterRole: get secrets, never list or watch")
    check(len(of_kind(docs, "ClusterRoleBinding")) == 1, "one ClusterRoleBinding")
    check(not of_kind(docs, "RoleBinding"), "no RoleBindings in cluster-wide mode")
    check(not of_kind(docs, "ServiceMonitor") and not of_kind(docs, "PrometheusRule"),
          "no prometheus-operator objects by default")
    check(c["image"] == "ghcr.io/atlasops/atlas-encryption-operator:0.1.0", "image defaults to <repository>:<appVersion>")
    check(c.get("envFrom") is None, "no envFrom without aws.credentialsSecret")
    check("KMS_ENDPOINT_URL" not in env_of(c) and "AWS_REGION" not in env_of(c), "optional AWS env unset by default")
    check("WATCH_LABEL_SELECTOR" not in env_of(c), "every object is watched by default")
    check("SSL_CERT_FILE" not in env_of(c) and "SSL_CERT_DIR" not in env_of(c)
          and [v["name"] for v in deploy["spec"]["template"]["spec"]["volumes"]] == ["tmp"],
          "no trust store change by default")
    check(env_value(c, "LOG_FORMAT") == "json" and env_value(c, "CONCURRENCY") == "16"
          and "ATLAS_RATE_PER_SECOND" not in env_of(c) and env_value(c, "ATLAS_BURST") == "20"
          and env_value(c, "ATLAS_TIMEOUT") == "30s" and env_value(c, "RESYNC_PERIOD") == "10m"
          and env_value(c, "KMS_PREFLIGHT") == "true" and env_value(c, "ATLAS_BASE_URL") == "https://cloud.mongodb.com",
          "defaults match the operator's own")


def scenario_namespaced_ha(docs):
    deploy, c = check_common(docs)
    check(deploy["spec"]["replicas"] == 2, "two replicas")
    check(env_value(c, "LEADER_ELECT") == "true", "replicas 2: LEADER_ELECT=true")
    check(env_value(c, "LEADER_ELECTION_NAMESPACE") == RELEASE_NS, "the Lease defaults to the release namespace")
    check(env_value(c, "LEADER_ELECTION_LEASE_NAME") == "atlas-encryption-operator", "default Lease name")
    check(deploy["spec"]["strategy"]["type"] == "RollingUpdate", "with a Lease the rollout is RollingUpdate")
    check(env_value(c, "WATCH_NAMESPACES") == "team-a,team-b", "WATCH_NAMESPACES=team-a,team-b")
    check(not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding"),
          "namespaced mode: no ClusterRole or ClusterRoleBinding at all")
    for ns in ["team-a", "team-b"]:
        roles = [r for r in of_kind(docs, "Role") if r["metadata"]["namespace"] == ns]
        check(len(roles) == 1, f"one Role in {ns}")
        r = roles[0]
        check(grants(r, GROUP, "projectencryptions", "list") and grants(r, GROUP, "clusterencryptions/status", "patch")
              and grants(r, "", "secrets", "get") and grants(r, "events.k8s.io", "events", "create"),
              f"Role in {ns} carries the operator's rules")
        check(any(b["metadata"]["namespace"] == ns for b in of_kind(docs, "RoleBinding")), f"a RoleBinding in {ns}")
    check(not [r for r in of_kind(docs, "Role") if r["metadata"]["namespace"] == RELEASE_NS
               and rules_touching_group(r, GROUP)], "no CRD access in the (unwatched) release namespace")
    (lr,) = lease_roles(docs)
    check(lr["metadata"]["namespace"] == RELEASE_NS, "the Lease Role is in the release namespace")
    check(grants(lr, "coordination.k8s.io", "leases", "create")
          and grants(lr, "coordination.k8s.io", "leases", "get", "atlas-encryption-operator")
          and grants(lr, "coordination.k8s.io", "leases", "update", "atlas-encryption-operator"),
          "Lease Role: create, get and update")
    check(not grants(lr, "coordination.k8s.io", "leases", "update", "someone-elses-lease")
          and not grants(lr, "coordination.k8s.io", "leases", "delete", "atlas-encryption-operator")
          and not grants(lr, "coordination.k8s.io", "leases", "list"),
          "Lease Role: get/update only the operator's Lease, no delete or list")
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    check(pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"] == deploy["spec"]["selector"],
          "PDB keeps one operator pod")
    check(env_value(c, "LOG_FORMAT") == "text" and env_value(c, "CONCURRENCY") == "4", "operator values reach the env")


def scenario_monitoring_irsa(docs):
    deploy, c = check_common(docs)
    sa = one(docs, "ServiceAccount")
    check(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/atlas-encryption-operator"),
          "IRSA annotation on the ServiceAccount")
    check(c["image"].endswith("@sha256:" + "0123456789abcdef" * 4), "a digest replaces the tag")
    check(c["envFrom"] == [{"secretRef": {"name": "aws-kms-preflight"}}], "aws.credentialsSecret becomes envFrom")
    check(env_value(c, "AWS_REGION") == "eu-west-2" and env_value(c, "KMS_ENDPOINT_URL").startswith("https://kms."),
          "AWS_REGION and KMS_ENDPOINT_URL set")
    check(env_value(c, "ATLAS_RATE_PER_SECOND") == "2.5", "a fractional rate stays fractional")
    check(env_value(c, "WATCH_LABEL_SELECTOR") == "sharding.atlas-encryption.io/key=shard1",
          "watchLabelSelector becomes WATCH_LABEL_SELECTOR")
    check(list(env_of(c))[-1] == "RUST_BACKTRACE", "extraEnv is appended last")
    pod = deploy["spec"]["template"]["spec"]
    ca_dir = env_value(c, "SSL_CERT_DIR")
    check(env_value(c, "SSL_CERT_FILE") == "/etc/ssl/certs/ca-certificates.crt" and ca_dir,
          "trustedCA keeps the public roots (SSL_CERT_FILE) and adds its directory (SSL_CERT_DIR)")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    check(mounts.get("trusted-ca", {}).get("mountPath") == ca_dir and mounts["trusted-ca"].get("readOnly") is True,
          "the trusted CA is mounted read-only where SSL_CERT_DIR points")
    check(volumes.get("trusted-ca", {}).get("configMap", {}).get("name") == "corp-proxy-ca",
          "the trusted CA comes from the named ConfigMap")
    meta = deploy["spec"]["template"]["metadata"]
    check(meta["annotations"]["example.com/team"] == "platform" and meta["labels"]["example.com/cost-center"] == "42",
          "podAnnotations and podLabels reach the pod")
    check(all(d["metadata"]["labels"].get("example.com/owner") == "platform" for d in docs), "commonLabels on every object")
    (tsc,) = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
    check(tsc["labelSelector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"],
          "topologySpreadConstraints get the chart's selector")
    sm = one(docs, "ServiceMonitor")
    check(sm["metadata"]["labels"]["release"] == "kube-prometheus-stack", "ServiceMonitor carries the selector labels")
    ep = sm["spec"]["endpoints"][0]
    check(ep["port"] == "metrics" and ep["path"] == "/metrics" and ep["honorLabels"] is True,
          "ServiceMonitor scrapes /metrics on the metrics port and keeps the namespace label")
    svc = [s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")][0]
    check(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
          "ServiceMonitor selects the metrics Service")
    pr = one(docs, "PrometheusRule")
    rules = {r["alert"]: r for g in pr["spec"]["groups"] for r in g["rules"] if "alert" in r}
    check(set(rules) == {"AtlasKeyRotationDue", "AtlasKeyInvalid", "AtlasEncryptionReconcileErrors"},
          "PrometheusRule has the three alerts")
    check("atlas_encryption_operator_key_rotation_due" in rules["AtlasKeyRotationDue"]["expr"], "rotation alert on key_rotation_due")
    check("atlas_encryption_operator_key_valid" in rules["AtlasKeyInvalid"]["expr"]
          and rules["AtlasKeyInvalid"]["labels"]["severity"] == "critical", "invalid-key alert on key_valid, critical")
    expr = rules["AtlasEncryptionReconcileErrors"]["expr"]
    check('atlas_encryption_operator_reconciles_total{result="error"}[15m]' in expr and "rate(" in expr,
          "reconcile-error alert is a 15m rate of result=error")
    for name, r in rules.items():
        a = r["annotations"]
        check(a.get("summary") and a.get("description") and a.get("runbook_url", "").endswith("#" + name.lower()),
              f"{name} has summary, description and runbook_url")
        check("{{ $labels." in a["summary"] + a["description"], f"{name} annotations keep Prometheus templating")
        check(r["labels"].get("team") == "platform", f"{name} carries additionalLabels")


def scenario_single_leader(docs):
    deploy, c = check_common(docs)
    check(deploy["spec"]["replicas"] == 1 and env_value(c, "LEADER_ELECT") == "true",
          "one replica with leaderElection.enabled=true: LEADER_ELECT=true")
    check(env_value(c, "LEADER_ELECTION_NAMESPACE") == "operators-leases"
          and env_value(c, "LEADER_ELECTION_LEASE_NAME") == "aeo-lease", "Lease namespace and name from values")
    (lr,) = lease_roles(docs)
    check(lr["metadata"]["namespace"] == "operators-leases" and grants(lr, "coordination.k8s.io", "leases", "update", "aeo-lease"),
          "the Lease Role follows the Lease")
    check(not of_kind(docs, "PodDisruptionBudget"), "no PDB with one replica")


SCENARIOS = {
    "default": scenario_default,
    "namespaced-ha": scenario_namespaced_ha,
    "monitoring-irsa": scenario_monitoring_irsa,
    "single-leader": scenario_single_leader,
}


def main(argv):
    if len(argv) == 3 and argv[0] == "--kinds":
        kinds = set(argv[1].split(","))
        print(yaml.safe_dump_all([d for d in load(argv[2]) if d["kind"] in kinds], sort_keys=False), end="")
        return
    if len(argv) == 3 and argv[0] == "--set-namespace":
        docs = load(argv[2])
        out = []
        for d in docs:
            if d["kind"] == "Namespace":
                continue
            d["metadata"]["namespace"] = argv[1]
            out.append(d)
        print(yaml.safe_dump_all(out, sort_keys=False), end="")
        return
    if len(argv) != 2 or argv[0] not in SCENARIOS:
        fail(f"usage: check_rendered.py {{{'|'.join(SCENARIOS)}}} RENDERED.yaml")
    SCENARIOS[argv[0]](load(argv[1]))
    print(f"check_rendered {argv[0]}: {len(PASSED)} checks passed")


if __name__ == "__main__":
    main(sys.argv[1:])
