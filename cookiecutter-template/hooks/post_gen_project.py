"""Remove what the answers did not ask for: profiles, CI files, the GPU variant."""

import shutil
from pathlib import Path

backends = "{{ cookiecutter.backends }}"
ci = "{{ cookiecutter.ci }}"
gpu = "{{ cookiecutter.gpu_variant }}"
package = "{{ cookiecutter.package_name }}"

remove = []
if backends not in ("local+htcondor", "all"):
    remove.append("profiles/htcondor")
if backends not in ("local+k8s", "all"):
    remove.append("profiles/k8s")
if ci not in ("github", "both"):
    remove.append(".github")
if ci not in ("gitlab", "both"):
    remove.append(".gitlab-ci.yml")
if gpu != "yes":
    remove.append(f"src/{package}/stages_gpu.py")
    remove.append("tests/test_stages_gpu.py")

for name in remove:
    path = Path(name)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
