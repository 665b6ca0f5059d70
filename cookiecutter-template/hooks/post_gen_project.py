"""Remove what the answers did not ask for: profiles, CI files, the GPU variant."""

import shutil
from pathlib import Path

backends = "{{ cookiecutter.backends }}"
ci = "{{ cookiecutter.ci }}"
gpu = "{{ cookiecutter.gpu_variant }}"
package = "{{ cookiecutter.package_name }}"

# Next to profiles/local, which is always kept: cookiecutter.json's _profiles.
PROFILES = {{ cookiecutter._profiles | list }}
chosen = PROFILES if backends == "all" else backends.split("+")[1:]

remove = [f"profiles/{name}" for name in PROFILES if name not in chosen]
if ci not in ("github", "both"):
    remove.append(".github")
if ci not in ("gitlab", "both"):
    remove.append(".gitlab-ci.yml")
if gpu != "yes":
    remove.append(f"src/{package}/histograms_gpu.py")
    remove.append("tests/test_histograms_gpu.py")

for name in remove:
    path = Path(name)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
