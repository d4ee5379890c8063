"""Runs the README's `local serve` examples as written, against a served local cloud that holds
the sample configuration's labs, so the examples cannot drift from what works.

    python readme_examples.py README.md BASE CERT

The Python block is taken from the README and run with its address and certificate replaced
by the test server's; the curl token request is run the same way and its token used for the
example's URL (with curl, since `az` is not installed here). Prints "N passed, N failed".
"""
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request

readme, base, cert = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(readme, encoding="utf-8").read()
host = urllib.parse.urlparse(base).netloc
passed = failed = 0


def localize(code: str) -> str:
    return (code.replace("https://127.0.0.1:7071", base)
                .replace("127.0.0.1:7071", host)
                .replace(".imagefactory/tls/localcloud-cert.pem", cert))


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


python_block = re.search(r"\*\*Python SDK\*\*.*?```python\n(.*?)```", text, re.S)
check("the README has the Python SDK example", python_block is not None)
if python_block:
    result = subprocess.run([sys.executable, "-c", localize(python_block.group(1))], capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    check("the Python SDK example runs and lists the sample's lab with its containers",
          result.returncode == 0 and any(line.startswith("DeveloperLab ") for line in lines),
          f"exit {result.returncode}; stdout {result.stdout!r}; stderr {result.stderr[-800:]!r}")

cli_block = re.search(r"\*\*Azure CLI\*\*.*?```sh\n(.*?)```", text, re.S)
check("the README has the Azure CLI example", cli_block is not None)
if cli_block:
    block = localize(cli_block.group(1))
    token_command = re.search(r"TOKEN=\$\((.*?)\)\n", block, re.S)
    url = re.search(r'--url "([^"]+)"', block)
    check("the Azure CLI example has a token request and a URL", token_command is not None and url is not None)
    if token_command and url:
        token = subprocess.run(["bash", "-c", token_command.group(1)], capture_output=True, text=True, timeout=60).stdout.strip()
        context = ssl.create_default_context(cafile=cert)
        request = urllib.request.Request(url.group(1), headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=60) as response:
                names = [lab["name"] for lab in json.load(response).get("value", [])]
            check("the Azure CLI example's request lists the sample's lab", "DeveloperLab" in names, f"labs {names}")
        except Exception as error:  # noqa: BLE001 - any failure is a failed check
            check("the Azure CLI example's request lists the sample's lab", False, str(error))

# The README's "Trying it with no Azure subscription": our own --backend azure against the server,
# with the variables the block exports (the block's first line starts a server; the test has one).
azure_block = re.search(r"### Trying it with no Azure subscription.*?```sh\n(.*?)```", text, re.S)
check("the README has the --backend azure example", azure_block is not None)
binary = os.environ.get("IMAGEFACTORY_BIN")
if azure_block and binary:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEFACTORY_") and not k.startswith("AZURE_")}
    commands = []
    for line in localize(azure_block.group(1)).splitlines():
        if line.startswith("export "):
            for assignment in shlex.split(line[len("export "):]):
                key, _, value = assignment.partition("=")
                environment[key] = value
        elif line.startswith("swift run imagefactory ") and "local serve" not in line:
            commands.append(shlex.split(line)[3:])
    check("the --backend azure example runs doctor and plan", [c[0] for c in commands] == ["doctor", "plan"], f"commands {commands}")
    for arguments in commands:
        result = subprocess.run([binary] + arguments, capture_output=True, text=True, timeout=300, env=environment)
        expected = "All is well." if arguments[0] == "doctor" else "actions:"
        check(f"`imagefactory {' '.join(arguments)}` from the README works against local serve",
              result.returncode == 0 and expected in result.stdout, f"exit {result.returncode}; stdout {result.stdout[-600:]!r}; stderr {result.stderr[-600:]!r}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
