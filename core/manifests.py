"""Kubernetes manifests as data: the pieces every workload of ours shares, and writing them as YAML.

The generators (serving.kubernetes, training.cluster) build plain dicts from their configuration dataclasses, so
each fact (a port, a flag, a path) has one source; `tests/test_kubernetes.py` validates what they write with
`kubernetes-validate --strict` against a pinned Kubernetes version.
"""

from pathlib import Path

KUBERNETES_VERSION = "1.33.0"  # the API the manifests are written and validated for
APP = "srgan"


def labels(component: str) -> dict:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "srgan-toolkit"}


def metadata(name: str, component: str, namespace: str | None) -> dict:
    meta = {"name": name, "labels": labels(component)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def restricted_security_context(user: int = 1000) -> dict:
    """A container that passes the `restricted` Pod Security Standard: not root, no privilege escalation, no
    capabilities, the runtime's seccomp profile, and a read-only root file system (writes go to volumes)."""
    return {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def spread_across_nodes(component: str) -> dict:
    """Prefer one pod per node, so a node's loss takes one replica."""
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                           "labelSelector": {"matchLabels": labels(component)}}}]}}


def to_yaml(documents: list[dict]) -> str:
    """YAML as people write it: keys in the order given, multi-line strings (scripts) as literal blocks, no
    anchors for repeated parts."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True

    def text(dumper, value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump_all(documents, Dumper=Dumper, sort_keys=False, width=120)


def write_documents(path: Path, documents: list[dict]) -> Path:
    """One YAML file of one or more documents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(documents))
    return path


def write_kustomization(folder: Path, resources: list[Path], config_maps: dict[str, list[Path]] | None = None) -> Path:
    """kustomization.yaml listing the folder's resources, for `kubectl apply -k`; each ConfigMap is generated from
    files beside it (kept under its plain name: servers that poll a mounted file see an edit without a restart)."""
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [p.name for p in resources]}
    if config_maps:
        kustomization["configMapGenerator"] = [{"name": name, "files": [p.name for p in files],
                                                "options": {"disableNameSuffixHash": True}}
                                               for name, files in config_maps.items()]
    return write_documents(folder / "kustomization.yaml", [kustomization])
