"""Fixtures for the control-plane smoke tests: a real etcd + kube-apiserver (see rig.kube)."""

from rig.kube import kube_control_plane, pytest_collection_finish, testenv_bin_dir

__all__ = ["kube_control_plane", "pytest_collection_finish", "testenv_bin_dir"]
