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
from azure.core.credentials import AzureNamedKeyCredential
from azure.identity import (
    AzurePipelinesCredential,
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
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
from azure.storage.blob import BlobServiceClient, BlobType

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


def raw(method, path, token=None, body=None, headers=None):
    """A plain HTTPS request (no SDK), for what SDKs hide: 401s and admin calls."""
    context = ssl.create_default_context(cafile=CERT)
    request = urllib.request.Request(BASE + path, method=method, data=body)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def admin_json(method, path, body=None):
    status, _, payload = raw(method, path, body=json.dumps(body).encode() if body is not None else None)
    expect(status == 200, f"{method} {path}: {status} {payload[:300]}")
    return json.loads(payload)


def federated_assertion():
    """A GitHub Actions OIDC token, as the workflow would hand it to the credential: local serve is
    the issuer (the token endpoint verifies its signature, audience and expiry)."""
    return admin_json("POST", "/_imagefactory/federated-tokens",
                      {"issuer": "github", "subject": "repo:contoso/images:ref:refs/heads/main", "lifetime": 600})["token"]


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


def account_key(lab):
    """key1 of a lab's storage account, from ARM's listKeys through the management pipeline."""
    account = state[lab].default_storage_account.split("/")[-1]
    response = dtl._send_request(HttpRequest(
        "POST", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{account}/listKeys?api-version=2023-05-01"))
    response.raise_for_status()
    return account, response.json()["keys"][0]["value"]


class environment:
    """Sets environment variables for a block and restores them (credentials read them when used)."""

    def __init__(self, **values):
        self.values = values

    def __enter__(self):
        self.saved = {name: os.environ.get(name) for name in self.values}
        for name, value in self.values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def __exit__(self, *args):
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


MI_VARIABLES = dict(IDENTITY_ENDPOINT=None, IDENTITY_HEADER=None, IMDS_ENDPOINT=None, MSI_ENDPOINT=None, MSI_SECRET=None,
                    IDENTITY_SERVER_THUMBPRINT=None, AZURE_POD_IDENTITY_AUTHORITY_HOST=None, AZURE_CLIENT_ID=None)


def blobs_and_copy_between_accounts():
    vhd = os.urandom(512 * 1024) + b"conectix" + bytes(504)  # payload + a VHD-like footer
    source_account, source = blob_client("SdkLab1")
    dest_account, dest = blob_client("SdkLab2")
    source.create_container("vhds")
    # A VHD is a page blob: the SDK creates it at its size, then writes it with Put Page.
    source.get_blob_client("vhds", "image.vhd").upload_blob(vhd, blob_type=BlobType.PAGEBLOB, metadata={"imagepath": "Linux/Ubuntu.json"})
    props = source.get_blob_client("vhds", "image.vhd").get_blob_properties()
    expect(props.size == len(vhd) and props.metadata.get("imagepath") == "Linux/Ubuntu.json", f"properties {props.size} {props.metadata}")
    expect(props.blob_type == BlobType.PAGEBLOB, f"blob type {props.blob_type}")
    expect(props.content_settings.content_md5 is None, "Azure computes no Content-MD5 for a page blob")
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
    expect(target.get_blob_properties().blob_type == BlobType.PAGEBLOB, "a copy keeps its source's blob type")
    state["vhd_url"] = target.url
    # The same bytes as a block blob, for the refusal check.
    block = dest.get_blob_client("uploads", "block.vhd")
    block.upload_blob(vhd)
    state["block_vhd_url"] = block.url
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
    # A VHD uploaded as a block blob is refused, as Azure refuses it.
    block = CustomImage(vhd=CustomImagePropertiesCustom(image_name=state["block_vhd_url"], sys_prep=True, os_type="Linux"))
    try:
        dtl.custom_images.begin_create_or_update(RG, "SdkLab2", "from-block-blob", block).result(timeout=120)
        raise AssertionError("a custom image from a block blob was accepted")
    except HttpResponseError as error:
        expect(error.status_code == 400 and error.error.code == "BadRequest", f"{error.status_code} {error.error.code if error.error else error}")


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
    # PATCH (GalleryImageVersions_Update), as the factory retires a version in two steps.
    updated = compute.gallery_image_versions.begin_update(RG, "sdkgallery", "ubuntu", "1.0.0", {
        "properties": {"publishingProfile": {"excludeFromLatest": True}}}).result(timeout=120)
    expect(updated.properties.publishing_profile.exclude_from_latest is True, f"excludeFromLatest {updated.properties.publishing_profile}")
    expect("ubuntu" in [d.name for d in compute.gallery_images.list_by_gallery(RG, "sdkgallery")], "the definition is listed")
    try:
        compute.gallery_images.begin_delete(RG, "sdkgallery", "ubuntu").result(timeout=60)
        raise AssertionError("a definition holding a version was deleted")
    except HttpResponseError as error:
        expect(error.status_code == 409, f"deleting a definition with versions: {error.status_code}")
    compute.gallery_image_versions.begin_delete(RG, "sdkgallery", "ubuntu", "1.0.0").result(timeout=120)
    compute.gallery_images.begin_delete(RG, "sdkgallery", "ubuntu").result(timeout=60)
    expect("ubuntu" not in [d.name for d in compute.gallery_images.list_by_gallery(RG, "sdkgallery")], "the emptied definition is gone")


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


def shared_key_put_get_list():
    """Shared Key: the SDK signs every request with the account key; the server verifies each."""
    account, key = account_key("SdkLab1")
    client = BlobServiceClient(account_url=f"{BASE}/{account}", credential=AzureNamedKeyCredential(account, key), connection_verify=CERT)
    container = client.get_container_client("sharedkey")
    container.create_container()
    data = b"signed with the account key " * 100
    container.get_blob_client("dir/key blob.bin").upload_blob(data, metadata={"via": "sharedkey"})
    expect(container.get_blob_client("dir/key blob.bin").download_blob().readall() == data, "Shared Key download differs")
    expect([b.name for b in container.list_blobs(name_starts_with="dir/")] == ["dir/key blob.bin"], "Shared Key list")
    expect("sharedkey" in [c.name for c in client.list_containers()], "Shared Key list containers")
    wrong = BlobServiceClient(account_url=f"{BASE}/{account}", credential=AzureNamedKeyCredential(account, base64.b64encode(b"x" * 64).decode()),
                              connection_verify=CERT)
    try:
        wrong.get_container_client("sharedkey").get_blob_client("dir/key blob.bin").get_blob_properties()
        raise AssertionError("a wrong account key was accepted")
    except HttpResponseError as error:
        expect(error.status_code == 403, f"wrong key answered {error.status_code}")


def service_sas_read():
    from datetime import datetime, timedelta, timezone
    from azure.storage.blob import BlobClient, BlobSasPermissions, generate_blob_sas
    account, key = account_key("SdkLab1")
    sas = generate_blob_sas(account, "vhds", "image.vhd", account_key=key, permission=BlobSasPermissions(read=True),
                            expiry=datetime.now(timezone.utc) + timedelta(minutes=30))
    blob = BlobClient.from_blob_url(f"{BASE}/{account}/vhds/image.vhd?{sas}", connection_verify=CERT)
    expect(blob.get_blob_properties().size > 0 and len(blob.download_blob().readall()) == blob.get_blob_properties().size, "service SAS read")
    write_only = generate_blob_sas(account, "vhds", "image.vhd", account_key=key, permission=BlobSasPermissions(write=True),
                                   expiry=datetime.now(timezone.utc) + timedelta(minutes=30))
    try:
        BlobClient.from_blob_url(f"{BASE}/{account}/vhds/image.vhd?{write_only}", connection_verify=CERT).download_blob().readall()
        raise AssertionError("a write-only SAS could read")
    except HttpResponseError as error:
        expect(error.status_code == 403 and error.error_code == "AuthorizationPermissionMismatch", f"{error.status_code} {error.error_code}")


def user_delegation_sas_read_and_copy_source():
    from datetime import datetime, timedelta, timezone
    from azure.storage.blob import BlobClient, BlobSasPermissions, generate_blob_sas
    source_account, source = blob_client("SdkLab1")
    _, dest = blob_client("SdkLab2")
    now = datetime.now(timezone.utc)
    key = source.get_user_delegation_key(now - timedelta(minutes=1), now + timedelta(hours=1))
    expect(key.signed_service == "b" and key.value, f"user delegation key {key.signed_service}")
    sas = generate_blob_sas(source_account, "vhds", "image.vhd", user_delegation_key=key, permission=BlobSasPermissions(read=True),
                            expiry=now + timedelta(minutes=30))
    url = f"{BASE}/{source_account}/vhds/image.vhd?{sas}"
    original = source.get_blob_client("vhds", "image.vhd").download_blob().readall()
    expect(BlobClient.from_blob_url(url, connection_verify=CERT).download_blob().readall() == original, "user delegation SAS read")
    target = dest.get_blob_client("uploads", "from-ud-sas.vhd")
    copy = target.start_copy_from_url(url)
    deadline = time.time() + 60
    while True:
        status = target.get_blob_properties().copy
        if status.status != "pending" or time.time() > deadline:
            break
        time.sleep(0.2)
    expect(status.status == "success" and status.id == copy["copy_id"], f"copy with a user delegation SAS ended {status.status}")
    expect(target.download_blob().readall() == original, "copied bytes differ")
    forged = url.replace("sig=", "sig=AAAA")
    try:
        dest.get_blob_client("uploads", "forged-sas.vhd").start_copy_from_url(forged)
        raise AssertionError("a copy with a forged SAS was accepted")
    except HttpResponseError as error:
        expect(error.status_code == 403 and error.error_code == "CannotVerifyCopySource", f"{error.status_code} {error.error_code}")


def certificate_credential():
    """CertificateCredential (what AZURE_CLIENT_CERTIFICATE_PATH configures): MSAL signs a client
    assertion with the certificate's key; the token endpoint verifies it against the registered certificate."""
    import datetime as dt
    import tempfile
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagefactory-sdk-cert")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()) + \
        cert.public_bytes(serialization.Encoding.PEM)
    client_id = "imagefactory-sdk-certificate"
    with tempfile.NamedTemporaryFile(suffix=".pem", delete=False) as handle:
        handle.write(pem)
        path = handle.name
    try:
        unregistered = CertificateCredential(TENANT, client_id, path, **common)
        try:
            unregistered.get_token(ARM_SCOPE)
            raise AssertionError("an unregistered certificate was accepted")
        except ClientAuthenticationError as error:
            expect("AADSTS700027" in str(error), str(error)[:300])
        status, _, body = raw("PUT", f"/_imagefactory/client-certificates/{client_id}", body=cert.public_bytes(serialization.Encoding.PEM))
        expect(status == 204, f"register certificate: {status} {body[:200]}")
        credential = CertificateCredential(TENANT, client_id, path, **common)
        token = credential.get_token(ARM_SCOPE)
        expect(token.token.count(".") == 2, "certificate token looks wrong")
        labs = DevTestLabsClient(credential, SUB, base_url=BASE, credential_scopes=[ARM_SCOPE], connection_verify=CERT)
        expect(len(list(labs.labs.list_by_subscription())) >= 2, "ARM with a certificate credential's token")
    finally:
        os.unlink(path)


def workload_identity_and_azure_pipelines():
    """WorkloadIdentityCredential reads a Kubernetes service account token from a file;
    AzurePipelinesCredential asks Azure DevOps' OIDC endpoint (SYSTEM_OIDCREQUESTURI) for one."""
    import tempfile
    token = admin_json("POST", "/_imagefactory/federated-tokens", {"issuer": "kubernetes", "subject": "system:serviceaccount:ci:builder"})["token"]
    with tempfile.NamedTemporaryFile("w", suffix=".jwt", delete=False) as handle:
        handle.write(token)
        path = handle.name
    try:
        workload = WorkloadIdentityCredential(tenant_id=TENANT, client_id="imagefactory-sdk-workload", token_file_path=path, **common)
        expect(workload.get_token(STORAGE_SCOPE).token.count(".") == 2, "workload identity token")
    finally:
        os.unlink(path)
    access_token = admin_json("POST", "/_imagefactory/ci-request-tokens")["token"]
    with environment(SYSTEM_OIDCREQUESTURI=f"{BASE}/_ado/oidctoken"):
        pipelines = AzurePipelinesCredential(tenant_id=TENANT, client_id="imagefactory-sdk-pipelines",
                                             service_connection_id="5c1b9f3e-0000-4000-8000-000000000001",
                                             system_access_token=access_token, **common)
        expect(pipelines.get_token(ARM_SCOPE).token.count(".") == 2, "Azure Pipelines token")
    # GitHub Actions: what actions/core's getIDToken does with ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN.
    status, _, body = raw("GET", "/_github/idtoken?api-version=2.0&audience=api://AzureADTokenExchange",
                          headers={"Authorization": f"Bearer {access_token}"})
    expect(status == 200 and json.loads(body)["value"].count(".") == 2, f"GitHub OIDC request: {status}")


def managed_identity_imds_and_app_service():
    """ManagedIdentityCredential against IMDS (AZURE_POD_IDENTITY_AUTHORITY_HOST moves its host) and
    App Service (IDENTITY_ENDPOINT / IDENTITY_HEADER)."""
    account, _ = account_key("SdkLab1")
    with environment(**dict(MI_VARIABLES, AZURE_POD_IDENTITY_AUTHORITY_HOST=BASE)):
        imds = ManagedIdentityCredential(connection_verify=CERT)
        token = imds.get_token(ARM_SCOPE)
        expect(token.token.count(".") == 2 and token.expires_on > time.time() + 60, "IMDS token")
        labs = DevTestLabsClient(imds, SUB, base_url=BASE, credential_scopes=[ARM_SCOPE], connection_verify=CERT)
        expect(len(list(labs.labs.list_by_subscription())) >= 2, "ARM with an IMDS token")
        user_assigned = ManagedIdentityCredential(client_id="imagefactory-sdk-user-assigned", connection_verify=CERT)
        blobs = BlobServiceClient(account_url=f"{BASE}/{account}", credential=user_assigned, connection_verify=CERT)
        expect("vhds" in [c.name for c in blobs.list_containers()], "Blob with a user-assigned IMDS token")
    header = admin_json("POST", "/_imagefactory/ci-request-tokens")["token"]
    with environment(**dict(MI_VARIABLES, IDENTITY_ENDPOINT=f"{BASE}/msi/token", IDENTITY_HEADER=header)):
        app_service = ManagedIdentityCredential(connection_verify=CERT)
        blobs = BlobServiceClient(account_url=f"{BASE}/{account}", credential=app_service, connection_verify=CERT)
        expect("vhds" in [c.name for c in blobs.list_containers()], "Blob with an App Service token")
    with environment(**dict(MI_VARIABLES, IDENTITY_ENDPOINT=f"{BASE}/msi/token", IDENTITY_HEADER="not-the-secret")):
        try:
            ManagedIdentityCredential(connection_verify=CERT).get_token(STORAGE_SCOPE)
            raise AssertionError("App Service's endpoint accepted a wrong IDENTITY_HEADER")
        except ClientAuthenticationError:
            pass


check("token endpoint: client secret and federated assertion (azure-identity)", tokens)
check("ARM without a token: 401 with a challenge", unauthenticated_is_401)
check("labs: create (LRO) and list", create_and_list_labs)
check("lab VM: create and wait with the SDK poller, artifacts expanded", lab_vm_with_poller)
check("blobs: put, properties, get, list; copy between accounts with a SAS and wait", blobs_and_copy_between_accounts)
check("copy from another account without a SAS is refused (403)", copy_without_sas_is_refused)
check("Shared Key (account key credential): put, get, list; a wrong key is 403", shared_key_put_get_list)
check("service SAS (generate_blob_sas with the account key): read; a write-only SAS cannot read", service_sas_read)
check("user delegation key and SAS: read, cross-account copy source; a forged SAS is refused", user_delegation_sas_read_and_copy_source)
check("CertificateCredential: refused until the certificate is registered, then ARM works", certificate_credential)
check("WorkloadIdentityCredential (Kubernetes token file), AzurePipelinesCredential, GitHub OIDC request", workload_identity_and_azure_pipelines)
check("ManagedIdentityCredential: IMDS (system and user assigned) and App Service", managed_identity_imds_and_app_service)
check("blob lease: acquire, conflict, renew, release", lease_blob)
check("compute VM and OS disk of a lab VM: grant access refused while running, stop, grant, copy the SAS, revoke", compute_vm_disk_grant_copy_revoke)
check("custom image from the copied VHD (LRO)", custom_image_from_vhd)
check("gallery, image definition, version; replication status; update, list, delete", gallery_definition_version)
check("resource-group deployment of a golden-image template (LRO)", deployment_of_golden_image_template)
check("paging through nextLink (page size 2)", paging)
check("surviving 429 throttling on a write burst", survive_429)
check("expired token: 401, then a new token works", expired_token_is_401_then_refresh)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
