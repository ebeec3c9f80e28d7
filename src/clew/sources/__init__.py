"""Where Kubernetes objects come from: files and folders of manifests, or a kube-apiserver."""
