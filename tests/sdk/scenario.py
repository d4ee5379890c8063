"""Proof of fidelity: Microsoft's own Python SDKs against `imagefactory local serve`.

Every step uses the SDKs as a user would against Azure; only the endpoints differ (base_url,
authority, account_url) and the self-signed certificate is trusted through connection_verify.
Anything the SDK rejects is a bug in the emulation.

Usage: scenario.py BASE_URL CERT_PATH   (run by scripts/sdk-check.sh)
Prints one line per check and, last, "N passed, N failed"; exits non-zero on any failure.
"""

import base64
import json
import os
import ssl
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.rest import HttpRequest
from azure.identity import ClientAssertionCredential, ClientSecretCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.devtestlabs import DevTestLabsClient
from azure.mgmt.devtestlabs.models import (
    ArtifactInstallProperties,
    ArtifactSource,
    CustomImage,
    CustomImagePropertiesCustom,
    GalleryImageReference,
    Lab,
    LabVirtualMachine,
)
from azure.mgmt.resource.deployments import DeploymentsMgmtClient
from azure.storage.blob import BlobServiceClient

BASE = sys.argv[1].rstrip("/")
CERT = sys.argv[2]
TENANT = "00000000-0000-0000-0000-000000000001"
SUB = "11111111-1111-1111-1111-111111111111"
# A second subscription, drained on purpose to meet ARM's write throttling.
BURST_SUB = "22222222-2222-2222-2222-222222222222"
RG = "sdk-rg"
ARM_SCOPE = "https://management.azure.com/.default"
STORAGE_SCOPE = "https://storage.azure.com/.default"
HOST = BASE.split("://", 1)[1]

passed = 0
failed = 0


def check(name, fn):
    global passed, failed
    started = time.time()
    try:
        fn()
        passed += 1
        print(f"PASS {name} ({time.time() - started:.1f}s)", flush=True)
    except Exception:  # report every failure and go on, so one run shows them all
        failed += 1
        print(f"FAIL {name}", flush=True)
        traceback.print_exc(file=sys.stdout)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def raw(method, path, token=None, body=None):
    """A plain HTTPS request (no SDK), for what SDKs hide: 401s and admin calls."""
    context = ssl.create_default_context(cafile=CERT)
    request = urllib.request.Request(BASE + path, method=method, data=body)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def federated_assertion():
    """A workload-identity-style JWT, as GitHub or Azure DevOps would hand to the credential."""
    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    now = int(time.time())
    claims = {"iss": "https://token.actions.githubusercontent.com", "sub": "repo:org/repo:ref:refs/heads/main",
              "aud": "api://AzureADTokenExchange", "iat": now, "nbf": now, "exp": now + 600}
    return b64({"alg": "RS256", "typ": "JWT"}) + "." + b64(claims) + ".c2lnbmF0dXJl"


common = {"authority": HOST, "disable_instance_discovery": True, "connection_verify": CERT}
secret_credential = ClientSecretCredential(TENANT, "imagefactory-sdk-check", "local-secret", **common)
federated_credential = ClientAssertionCredential(TENANT, "imagefactory-sdk-federated", federated_assertion, **common)

client_options = {"base_url": BASE, "credential_scopes": [ARM_SCOPE], "connection_verify": CERT}
# Count the 429s the SDK met (the hook runs on every attempt, inside the SDK's retry loop).
statuses = []
client_options["raw_response_hook"] = lambda response: statuses.append(response.http_response.status_code)
dtl = DevTestLabsClient(secret_credential, SUB, **client_options)
compute = ComputeManagementClient(secret_credential, SUB, **client_options)
# Deployments left azure-mgmt-resource for azure-mgmt-resource-deployments in 2026.
resources = DeploymentsMgmtClient(secret_credential, SUB, **client_options)
state = {}


def tokens():
    token = secret_credential.get_token(ARM_SCOPE)
    expect(token.token.count(".") == 2 and token.expires_on > time.time() + 60, "client-secret token looks wrong")
    fed = federated_credential.get_token(STORAGE_SCOPE)
    expect(fed.token.count(".") == 2, "federated token looks wrong")
    state["arm_token"] = token.token


def unauthenticated_is_401():
    status, headers, body = raw("GET", f"/subscriptions/{SUB}/providers/Microsoft.DevTestLab/labs?api-version=2018-09-15")
    expect(status == 401, f"expected 401 without a token, got {status}")
    expect("WWW-Authenticate" in headers or "www-authenticate" in {k.lower() for k in headers}, "no WWW-Authenticate challenge")
    expect(json.loads(body)["error"]["code"] == "AuthenticationFailed", body)


def create_and_list_labs():
    for name in ["SdkLab1", "SdkLab2"]:
        lab = dtl.labs.begin_create_or_update(RG, name, Lab(location="westeurope")).result()
        expect(lab.provisioning_state == "Succeeded", f"lab {name}: {lab.provisioning_state}")
        state[name] = lab
    names = sorted(l.name for l in dtl.labs.list_by_subscription())
    expect(names == ["SdkLab1", "SdkLab2"], f"labs listed: {names}")
    expect(dtl.labs.get(RG, "SdkLab1").default_storage_account.endswith(state["SdkLab1"].default_storage_account.split("/")[-1]), "get lab")


def lab_vm_with_poller():
    vm = LabVirtualMachine(
        location="westeurope", size="Standard_DS2_v2", user_name="factory", password="P@ssw0rd-local-1",
        gallery_image_reference=GalleryImageReference(offer="0001-com-ubuntu-server-jammy", publisher="Canonical",
                                                      sku="22_04-lts", os_type="Linux", version="latest"),
        artifacts=[ArtifactInstallProperties(
            artifact_id=f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DevTestLab/labs/SdkLab1/artifactSources/public repo/artifacts/linux-apt-package",
            parameters=[{"name": "packages", "value": "git"}])],
        tags={"ImagePath": "Linux/Ubuntu.json"})
    poller = dtl.virtual_machines.begin_create_or_update(RG, "SdkLab1", "sdkvm1", vm)
    expect(poller.status() in ("InProgress", "Succeeded"), f"poller status {poller.status()}")
    result = poller.result(timeout=120)
    expect(result.provisioning_state == "Succeeded", f"VM provisioning {result.provisioning_state}")
    got = dtl.virtual_machines.get(RG, "SdkLab1", "sdkvm1", expand="properties($expand=artifacts)")
    expect(got.artifacts and got.artifacts[0].status == "Succeeded", f"artifacts {got.artifacts}")
    expect(got.tags.get("ImagePath") == "Linux/Ubuntu.json", f"tags {got.tags}")
    expect([v.name for v in dtl.virtual_machines.list(RG, "SdkLab1")] == ["sdkvm1"], "VM list")


def blob_client(lab):
    account = state[lab].default_storage_account.split("/")[-1]
    return account, BlobServiceClient(account_url=f"{BASE}/{account}", credential=federated_credential, connection_verify=CERT)


def blobs_and_copy_between_accounts():
    vhd = os.urandom(512 * 1024) + b"conectix" + bytes(504)  # payload + a VHD-like footer
    source_account, source = blob_client("SdkLab1")
    dest_account, dest = blob_client("SdkLab2")
    source.create_container("vhds")
    source.get_blob_client("vhds", "image.vhd").upload_blob(vhd, metadata={"imagepath": "Linux/Ubuntu.json"})
    props = source.get_blob_client("vhds", "image.vhd").get_blob_properties()
    expect(props.size == len(vhd) and props.metadata.get("imagepath") == "Linux/Ubuntu.json", f"properties {props.size} {props.metadata}")
    expect(source.get_blob_client("vhds", "image.vhd").download_blob().readall() == vhd, "download differs")
    expect([b.name for b in source.get_container_client("vhds").list_blobs()] == ["image.vhd"], "list blobs")
    # The source is private and in another account: the copy needs a SAS, as in Azure. The key comes
    # from the storage account's listKeys, through the management pipeline.
    response = dtl._send_request(HttpRequest(
        "POST", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{source_account}/listKeys?api-version=2023-05-01"))
    response.raise_for_status()
    key = response.json()["keys"][0]["value"]
    from datetime import datetime, timedelta, timezone
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas
    sas = generate_blob_sas(source_account, "vhds", "image.vhd", account_key=key, permission=BlobSasPermissions(read=True),
                            expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    dest.create_container("uploads")
    target = dest.get_blob_client("uploads", "image.vhd")
    copy = target.start_copy_from_url(f"{BASE}/{source_account}/vhds/image.vhd?{sas}")
    expect(copy["copy_status"] in ("pending", "success"), f"copy started {copy}")
    deadline = time.time() + 60
    while True:
        status = target.get_blob_properties().copy
        if status.status != "pending" or time.time() > deadline:
            break
        time.sleep(0.2)
    expect(status.status == "success", f"copy ended {status.status}: {status.status_description}")
    expect(status.id == copy["copy_id"], "copy id changed")
    expect(target.download_blob().readall() == vhd, "copied bytes differ")
    state["vhd_url"] = target.url
    state["vhd_account"] = dest_account


def copy_without_sas_is_refused():
    source_account, _ = blob_client("SdkLab1")
    _, dest = blob_client("SdkLab2")
    try:
        dest.get_blob_client("uploads", "nosas.vhd").start_copy_from_url(f"{BASE}/{source_account}/vhds/image.vhd")
    except HttpResponseError as error:
        expect(error.status_code == 403 and error.error_code == "CannotVerifyCopySource", f"{error.status_code} {error.error_code}")
        return
    raise AssertionError("a cross-account copy without a SAS was accepted")


def lease_blob():
    _, client = blob_client("SdkLab1")
    blob = client.get_blob_client("vhds", "image.vhd")
    lease = blob.acquire_lease(lease_duration=15)
    try:
        blob.acquire_lease(lease_duration=15)
        raise AssertionError("a second lease was granted")
    except HttpResponseError as error:
        expect(error.status_code == 409 and error.error_code == "LeaseAlreadyPresent", f"{error.status_code} {error.error_code}")
    expect(blob.get_blob_properties().lease.state == "leased", "lease state")
    lease.renew()
    lease.release()
    expect(blob.get_blob_properties().lease.state == "available", "lease released")


def compute_vm_disk_grant_copy_revoke():
    """How the original factory exported a VM's disk: deallocate, grant read access, copy, revoke."""
    from azure.storage.blob import BlobClient
    lab_vm = dtl.virtual_machines.get(RG, "SdkLab1", "sdkvm1")
    vm = compute.virtual_machines.get(RG, "sdkvm1", expand="instanceView")
    expect(vm.id.lower() == lab_vm.compute_id.lower(), f"computeId {lab_vm.compute_id} is not the compute VM {vm.id}")
    codes = [s.code for s in vm.properties.instance_view.statuses]
    expect("PowerState/running" in codes, f"instance view statuses {codes}")
    os_disk = vm.properties.storage_profile.os_disk
    expect(os_disk.os_type == "Linux", f"osType {os_disk.os_type}")
    disk_name = os_disk.managed_disk.id.split("/")[-1]
    expect("sdkvm1" in [v.name for v in compute.virtual_machines.list(RG)], "compute VM list")
    disk = compute.disks.get(RG, disk_name)
    expect(disk.properties.disk_state == "Attached" and disk.properties.disk_size_gb >= 1 and disk.properties.os_type == "Linux",
           f"disk {disk.properties.disk_state} {disk.properties.disk_size_gb} {disk.properties.os_type}")
    try:
        compute.disks.begin_grant_access(RG, disk_name, {"access": "Read", "durationInSeconds": 3600}).result()
        raise AssertionError("access to the disk of a running VM was granted")
    except HttpResponseError as error:
        expect(error.status_code == 409 and error.error.code == "OperationNotAllowed", f"{error.status_code} {error.error and error.error.code}")
    dtl.virtual_machines.begin_stop(RG, "SdkLab1", "sdkvm1").result(timeout=120)
    vm = compute.virtual_machines.get(RG, "sdkvm1", expand="instanceView")
    codes = [s.code for s in vm.properties.instance_view.statuses]
    expect("PowerState/deallocated" in codes, f"after stop: {codes}")
    expect(compute.disks.get(RG, disk_name).properties.disk_state == "Reserved", "disk of a deallocated VM is not Reserved")
    sas = compute.disks.begin_grant_access(RG, disk_name, {"access": "Read", "durationInSeconds": 3600}).result(timeout=120).access_sas
    expect(sas and sas.startswith(BASE + "/") and "sig=" in sas, f"accessSAS {sas}")
    expect(compute.disks.get(RG, disk_name).properties.disk_state == "ActiveSAS", "disk state with a SAS")
    expected_size = disk.properties.disk_size_bytes + 512
    source = BlobClient.from_blob_url(sas, connection_verify=CERT)
    expect(source.get_blob_properties().size == expected_size, "the SAS does not read the disk's VHD")
    _, dest = blob_client("SdkLab2")
    target = dest.get_blob_client("uploads", "exported-osdisk.vhd")
    copy = target.start_copy_from_url(sas)
    deadline = time.time() + 60
    while True:
        status = target.get_blob_properties().copy
        if status.status != "pending" or time.time() > deadline:
            break
        time.sleep(0.2)
    expect(status.status == "success", f"copy from the disk SAS ended {status.status}: {status.status_description}")
    expect(status.id == copy["copy_id"], "copy id changed")
    size = target.get_blob_properties().size
    expect(size == expected_size, f"copied size {size}, expected {expected_size}")
    footer = target.download_blob(offset=size - 512, length=512).readall()
    expect(b"conectix" in footer, "the copied blob has no VHD footer")
    compute.disks.begin_revoke_access(RG, disk_name).result(timeout=120)
    expect(compute.disks.get(RG, disk_name).properties.disk_state == "Reserved", "disk state after revoke")
    try:
        source.get_blob_properties()
        raise AssertionError("the SAS still works after endGetAccess")
    except HttpResponseError as error:
        expect(error.status_code == 403, f"revoked SAS answered {error.status_code}")
    try:
        dest.get_blob_client("uploads", "after-revoke.vhd").start_copy_from_url(sas)
        raise AssertionError("a copy from a revoked SAS was accepted")
    except HttpResponseError as error:
        expect(error.status_code == 403 and error.error_code == "CannotVerifyCopySource", f"{error.status_code} {error.error_code}")


def custom_image_from_vhd():
    image = CustomImage(vhd=CustomImagePropertiesCustom(image_name=state["vhd_url"], sys_prep=True, os_type="Linux"),
                        description="From the SDK check", tags={"ImagePath": "Linux/Ubuntu.json"})
    result = dtl.custom_images.begin_create_or_update(RG, "SdkLab2", "ubuntu-2204-sdk", image).result(timeout=120)
    expect(result.provisioning_state == "Succeeded", f"custom image {result.provisioning_state}")
    expect([i.name for i in dtl.custom_images.list(RG, "SdkLab2")] == ["ubuntu-2204-sdk"], "custom image list")


def gallery_definition_version():
    account_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{state['vhd_account']}"
    gallery = compute.galleries.begin_create_or_update(RG, "sdkgallery", {"location": "westeurope", "properties": {"description": "SDK check"}}).result()
    expect(gallery.name == "sdkgallery", f"gallery {gallery}")
    definition = compute.gallery_images.begin_create_or_update(RG, "sdkgallery", "ubuntu", {
        "location": "westeurope",
        "properties": {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V1",
                       "identifier": {"publisher": "ImageFactory", "offer": "Ubuntu", "sku": "22.04"}}}).result()
    expect(definition.name == "ubuntu", f"definition {definition}")
    version = compute.gallery_image_versions.begin_create_or_update(RG, "sdkgallery", "ubuntu", "1.0.0", {
        "location": "westeurope",
        "properties": {"publishingProfile": {"targetRegions": [{"name": "West Europe", "regionalReplicaCount": 1},
                                                               {"name": "North Europe", "regionalReplicaCount": 1}]},
                       "storageProfile": {"osDiskImage": {"source": {"uri": state["vhd_url"], "storageAccountId": account_id}}}}}).result(timeout=120)
    expect(version.name == "1.0.0", f"version {version}")
    got = compute.gallery_image_versions.get(RG, "sdkgallery", "ubuntu", "1.0.0", expand="ReplicationStatus")
    status = got.properties.replication_status
    expect(status.aggregated_state == "Completed", f"replication {status.aggregated_state}")
    expect(sorted(s.region for s in status.summary) == ["northeurope", "westeurope"], f"regions {[s.region for s in status.summary]}")


def deployment_of_golden_image_template():
    template = {"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
                "contentVersion": "1.0.0.0",
                "parameters": {"newVMName": {"type": "string"}, "labName": {"type": "string"}},
                "resources": [{"type": "Microsoft.DevTestLab/labs/virtualmachines", "apiVersion": "2018-09-15",
                               "name": "[concat(parameters('labName'), '/', parameters('newVMName'))]", "location": "westeurope",
                               "properties": {"galleryImageReference": {"offer": "WindowsServer", "publisher": "MicrosoftWindowsServer",
                                                                        "sku": "2022-datacenter", "osType": "Windows", "version": "latest"},
                                              "size": "Standard_DS2_v2", "artifacts": []}}]}
    result = resources.deployments.begin_create_or_update(RG, "sdk-deploy-1", {"properties": {
        "mode": "Incremental", "template": template,
        "parameters": {"newVMName": {"value": "sdkwin1"}, "labName": {"value": "SdkLab1"}}}}).result(timeout=120)
    expect(result.properties.provisioning_state == "Succeeded", f"deployment {result.properties.provisioning_state}")
    expect("sdk-deploy-1" in [d.name for d in resources.deployments.list_by_resource_group(RG)], "deployment list")
    expect(dtl.virtual_machines.get(RG, "SdkLab1", "sdkwin1").provisioning_state == "Succeeded", "deployed VM")


def paging():
    # The server runs with --page-size 2: 1 built-in + 4 new artifact sources make 3 pages.
    for i in range(4):
        dtl.artifact_sources.create_or_update(RG, "SdkLab1", f"repo{i}", ArtifactSource(
            display_name=f"Repo {i}", uri=f"https://example.invalid/repo{i}.git", source_type="GitHub", folder_path="/Artifacts",
            branch_ref="main", status="Enabled"))
    pages = list(dtl.artifact_sources.list(RG, "SdkLab1").by_page())
    items = [s.name for page in pages for s in page]
    expect(len(pages) == 3, f"expected 3 pages, got {len(pages)}")
    expect(sorted(items) == sorted(["public repo", "repo0", "repo1", "repo2", "repo3"]), f"items {items}")


def survive_429():
    burst = DevTestLabsClient(secret_credential, BURST_SUB, **client_options)
    burst.labs.begin_create_or_update(RG, "BurstLab", Lab(location="westeurope")).result()
    before = len(statuses)
    for i in range(14):  # more writes than the bucket holds (the check runs with IMAGEFACTORY_LOCAL_THROTTLE=10/5)
        burst.artifact_sources.create_or_update(RG, "BurstLab", f"burst{i}", ArtifactSource(
            uri=f"https://example.invalid/b{i}.git", source_type="GitHub"))
    throttled = statuses[before:].count(429)
    expect(throttled > 0, "no 429 was met: the burst did not reach the throttle")
    expect(len(list(burst.artifact_sources.list(RG, "BurstLab"))) == 15, "not every write landed after the retries")
    print(f"     (the SDK met {throttled} x 429 and retried after Retry-After)")


def expired_token_is_401_then_refresh():
    status, _, _ = raw("POST", "/_imagefactory/expire-tokens")
    expect(status == 204, f"expire-tokens: {status}")
    try:
        list(dtl.labs.list_by_subscription())
        raise AssertionError("a revoked token was accepted")
    except ClientAuthenticationError as error:
        expect(error.status_code == 401 and "ExpiredAuthenticationToken" in str(error), str(error))
    fresh = ClientSecretCredential(TENANT, "imagefactory-sdk-check", "local-secret", **common)
    again = DevTestLabsClient(fresh, SUB, base_url=BASE, credential_scopes=[ARM_SCOPE], connection_verify=CERT)
    expect(len(list(again.labs.list_by_subscription())) == 2, "a new token did not work")


check("token endpoint: client secret and federated assertion (azure-identity)", tokens)
check("ARM without a token: 401 with a challenge", unauthenticated_is_401)
check("labs: create (LRO) and list", create_and_list_labs)
check("lab VM: create and wait with the SDK poller, artifacts expanded", lab_vm_with_poller)
check("blobs: put, properties, get, list; copy between accounts with a SAS and wait", blobs_and_copy_between_accounts)
check("copy from another account without a SAS is refused (403)", copy_without_sas_is_refused)
check("blob lease: acquire, conflict, renew, release", lease_blob)
check("compute VM and OS disk of a lab VM: grant access refused while running, stop, grant, copy the SAS, revoke", compute_vm_disk_grant_copy_revoke)
check("custom image from the copied VHD (LRO)", custom_image_from_vhd)
check("gallery, image definition, version; replication status", gallery_definition_version)
check("resource-group deployment of a golden-image template (LRO)", deployment_of_golden_image_template)
check("paging through nextLink (page size 2)", paging)
check("surviving 429 throttling on a write burst", survive_429)
check("expired token: 401, then a new token works", expired_token_is_401_then_refresh)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
