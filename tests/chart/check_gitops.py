#!/usr/bin/env python3
"""Assertions on config/gitops, the folder users copy into their GitOps repository.

    check_gitops.py GITOPS_DIR KUSTOMIZE_OUTPUT.yaml [VALUES_OUT_DIR]

Checks the kustomize output (namespace, credentials reference, placeholder Secret), and that the
Argo CD and Flux examples are well-formed and point at this chart. With VALUES_OUT_DIR, writes the
chart values embedded in those examples to argocd-values.yaml and flux-values.yaml there, so
run.sh can render the chart with them (values.schema.json then checks them).
"""

import os
import sys

import yaml

from checks import PASSED, check, fail, load


def main(gitops, rendered, values_out=None):
    kust = load(os.path.join(gitops, "kustomization.yaml"))[0]
    ns = kust["namespace"]
    check(ns and kust["kind"] == "Kustomization", f"kustomization.yaml sets namespace {ns}")
    check(not any(r.startswith(("argocd", "flux")) for r in kust["resources"]),
          "the Argo CD and Flux examples are not part of the kustomize build")
    docs = load(rendered)
    by_kind = {d["kind"]: d for d in docs}
    check(all(d["metadata"].get("namespace") == ns for d in docs if d["kind"] != "Namespace"),
          f"every namespaced object lands in {ns}")
    check(by_kind["Namespace"]["metadata"]["name"] == ns, "the Namespace object matches")
    secret, pe, ce = by_kind["Secret"], by_kind["ProjectEncryption"], by_kind["ClusterEncryption"]
    check(pe["spec"]["credentialsRef"]["name"] == secret["metadata"]["name"],
          "the ProjectEncryption names the credentials Secret")
    check(ce["spec"]["projectEncryptionRef"]["name"] == pe["metadata"]["name"],
          "the ClusterEncryption names the ProjectEncryption")
    check(set(secret["stringData"]) == {"publicKey", "privateKey"}
          and all(v.startswith("REPLACE_WITH_") for v in secret["stringData"].values()),
          "the Secret holds placeholders only")
    text = open(os.path.join(gitops, "atlas-api-key-secret.yaml")).read()
    check(all(w in text for w in ("DO NOT COMMIT", "Sealed", "External Secrets", "SOPS")),
          "the Secret file says to use SealedSecrets, External Secrets or SOPS instead of committing it")

    argo = load(os.path.join(gitops, "argocd-application.yaml"))
    check([d["kind"] for d in argo] == ["Application", "Application"]
          and all(d["apiVersion"] == "argoproj.io/v1alpha1" for d in argo), "argocd-application.yaml: two Applications")
    op, objs = argo
    check(op["spec"]["source"]["chart"] == "atlas-encryption-operator", "Argo CD installs this chart")
    check(objs["spec"]["destination"]["namespace"] == ns, f"Argo CD syncs the objects into {ns}")
    waves = [int(d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for d in argo]
    check(waves[0] < waves[1], "the operator syncs in an earlier wave than its objects")

    flux = load(os.path.join(gitops, "flux-helmrelease.yaml"))
    kinds = {d["kind"]: d for d in flux}
    check({"HelmRepository", "HelmRelease", "Kustomization"} <= set(kinds), "flux-helmrelease.yaml: HelmRepository, HelmRelease, Kustomization")
    hr = kinds["HelmRelease"]
    check(hr["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
          and hr["spec"]["chart"]["spec"]["chart"] == "atlas-encryption-operator"
          and hr["spec"]["chart"]["spec"]["sourceRef"]["name"] == kinds["HelmRepository"]["metadata"]["name"],
          "the HelmRelease installs this chart from the HelmRepository")
    check(hr["spec"]["upgrade"]["crds"] == "CreateReplace", "Flux upgrades the CRDs with the chart")
    check(kinds["Kustomization"]["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1", "Flux Kustomization v1")

    if values_out:
        with open(os.path.join(values_out, "argocd-values.yaml"), "w") as f:
            yaml.safe_dump(op["spec"]["source"]["helm"]["valuesObject"], f)
        with open(os.path.join(values_out, "flux-values.yaml"), "w") as f:
            yaml.safe_dump(hr["spec"]["values"], f)
    print(f"check_gitops: {len(PASSED)} checks passed")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        fail("usage: check_gitops.py GITOPS_DIR KUSTOMIZE_OUTPUT.yaml [VALUES_OUT_DIR]")
    main(*sys.argv[1:])
