import FactoryModel
import Foundation
import LocalCloud
import Testing

/// The behaviour every `CloudBackend` must show, as the factory relies on it: Azure's rules,
/// Azure's error codes, long-running operations that end. Runs once per backend in `BackendUnderTest.all`.
@Suite("CloudBackend conformance")
struct CloudBackendConformanceTests {
    // MARK: Labs

    @Test("labs are listed per subscription and read by id", arguments: BackendUnderTest.all)
    func labs(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let labs = try await f.backend.listLabs(subscriptionId: f.subscriptionId)
            #expect(Set(labs.map(\.id.key)) == [f.factoryLab.id.key, f.targetLab.id.key])
            #expect(try await f.backend.getLab(f.factoryLab.id) == f.factoryLab)
            #expect(f.factoryLab.storageAccount != f.targetLab.storageAccount)
            let missing = LabID(subscriptionId: f.subscriptionId, resourceGroup: "rg-factory", name: "NoSuchLab")
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.getLab(missing) }
            #expect(try await f.backend.listLabs(subscriptionId: "99999999-0000-4000-8000-000000000000").isEmpty)
        }
    }

    // MARK: Virtual machines

    @Test("a VM is deployed, read, listed, tagged, stopped, started and deleted", arguments: BackendUnderTest.all)
    func vmLifecycle(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let id = VirtualMachineID(lab: f.factoryLab.id, name: "ubuntu-build-01")
            let handle = try await f.backend.deployVirtualMachine(Requests.vm(id, os: .linux, artifacts: ["linux-git"], tags: ["ImagePath": "Linux/Ubuntu.json"]))
            try await succeed(handle, on: f.backend)

            var vm = try await f.backend.getVirtualMachine(id)
            #expect(vm.provisioningState == "Succeeded")
            #expect(vm.powerState == "Running")
            #expect(vm.osType == .linux)
            #expect(vm.tags == ["ImagePath": "Linux/Ubuntu.json"])
            #expect(vm.artifacts == [ArtifactResult(name: "linux-git", status: "Succeeded")])
            #expect(!vm.generalized)
            #expect(try await f.backend.listVirtualMachines(lab: f.factoryLab.id).map(\.id) == [id])
            #expect(try await f.backend.listVirtualMachines(lab: f.targetLab.id).isEmpty)

            let deployments = try await f.backend.listDeployments(subscriptionId: f.subscriptionId, resourceGroup: f.factoryLab.id.resourceGroup)
            #expect(deployments.map(\.name) == ["deploy-ubuntu-build-01"])
            #expect(deployments.first?.provisioningState == "Succeeded")

            try await f.backend.updateVirtualMachineTags(id, tags: ["ImagePath": "Linux/Ubuntu.json", "Stage": "built"])
            #expect(try await f.backend.getVirtualMachine(id).tags["Stage"] == "built")

            try await succeed(try await f.backend.stopVirtualMachine(id), on: f.backend)
            vm = try await waitForVM(id, on: f.backend) { $0.isDeallocated }
            #expect(vm.powerState == "Deallocated")

            try await succeed(try await f.backend.startVirtualMachine(id), on: f.backend)
            vm = try await waitForVM(id, on: f.backend) { $0.powerState == "Running" }
            #expect(vm.provisioningState == "Succeeded")

            try await succeed(try await f.backend.deleteVirtualMachine(id), on: f.backend)
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.getVirtualMachine(id) }
            #expect(try await f.backend.listVirtualMachines(lab: f.factoryLab.id).isEmpty)
        }
    }

    @Test("a VM name already taken in the lab is a 409 Conflict", arguments: BackendUnderTest.all)
    func vmNameTaken(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let id = VirtualMachineID(lab: f.factoryLab.id, name: "win2022")
            try await succeed(try await f.backend.deployVirtualMachine(Requests.vm(id, os: .windows, tags: ["a": "1"])), on: f.backend)
            await expectCloudError(409, "Conflict") {
                try await f.backend.deployVirtualMachine(Requests.vm(id, os: .windows, tags: ["a": "2"], deploymentName: "second"))
            }
            // The first VM is untouched, and the same name in another lab is fine.
            #expect(try await f.backend.getVirtualMachine(id).tags == ["a": "1"])
            let other = VirtualMachineID(lab: f.targetLab.id, name: "win2022")
            try await succeed(try await f.backend.deployVirtualMachine(Requests.vm(other, os: .windows)), on: f.backend)
        }
    }

    @Test("a Windows VM name longer than 15 characters is refused; Linux allows it", arguments: BackendUnderTest.all)
    func windowsNameLength(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let name = "win2022datacente"  // 16 characters
            let windows = VirtualMachineID(lab: f.factoryLab.id, name: name)
            let error = await expectCloudError(400, "InvalidParameter") {
                try await f.backend.deployVirtualMachine(Requests.vm(windows, os: .windows))
            }
            #expect(error?.message.contains(name) == true)
            #expect(try await f.backend.listVirtualMachines(lab: f.factoryLab.id).isEmpty)
            #expect(try await f.backend.listDeployments(subscriptionId: f.subscriptionId, resourceGroup: f.factoryLab.id.resourceGroup).isEmpty)

            let fifteen = VirtualMachineID(lab: f.factoryLab.id, name: String(name.prefix(15)))
            try await succeed(try await f.backend.deployVirtualMachine(Requests.vm(fifteen, os: .windows)), on: f.backend)
            let linux = VirtualMachineID(lab: f.targetLab.id, name: name)
            try await succeed(try await f.backend.deployVirtualMachine(Requests.vm(linux, os: .linux)), on: f.backend)
        }
    }

    @Test("a running VM's disk cannot be exported; a generalized VM deallocates, exports, and never starts", arguments: BackendUnderTest.all)
    func exportAndGeneralize(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let running = VirtualMachineID(lab: f.factoryLab.id, name: "running01")
            try await succeed(try await f.backend.deployVirtualMachine(Requests.vm(running, os: .windows, artifacts: ["windows-chrome"])), on: f.backend)
            let target = BlobID(container: f.container, name: "running01.vhd")
            await expectCloudError(409, "OperationNotAllowed") { try await f.backend.beginDiskExport(running, to: target, accessSeconds: 3600) }
            await expectCloudError(404, "BlobNotFound") { try await f.backend.getBlobProperties(target) }

            let captured = VirtualMachineID(lab: f.factoryLab.id, name: "captured01")
            try await succeed(try await f.backend.deployVirtualMachine(Requests.generalizedVM(captured)), on: f.backend)
            let vm = try await waitForVM(captured, on: f.backend) { $0.isDeallocated }
            #expect(vm.generalized)
            #expect(vm.artifacts.map(\.status) == ["Succeeded", "Succeeded"])
            #expect(vm.artifacts.last?.name == "windows-sysprep")

            let vhd = BlobID(container: f.container, name: "captured01.vhd")
            let export = try await f.backend.beginDiskExport(captured, to: vhd, accessSeconds: 3600)
            let properties = try await finishedCopy(vhd, on: f.backend)
            try await succeed(try await f.backend.endDiskExport(export), on: f.backend)
            #expect(properties.copyStatus == .success)
            #expect(properties.contentLength > Int64(VirtualDisk.footerSize))
            #expect((properties.contentLength - Int64(VirtualDisk.footerSize)) % (1 << 20) == 0, "a VHD's virtual size is whole MiB")

            await expectCloudError(409, "OperationNotAllowed") { try await f.backend.startVirtualMachine(captured) }
            #expect(try await f.backend.getVirtualMachine(captured).isDeallocated)
        }
    }

    // MARK: Storage

    @Test("containers are created, listed and deleted; a second create is ContainerAlreadyExists", arguments: BackendUnderTest.all)
    func containers(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let account = f.targetLab.storageAccount
            let container = ContainerID(account: account, name: "vhds")
            try await f.backend.createContainer(container)
            #expect(try await f.backend.listContainers(account: account) == ["vhds"])
            await expectCloudError(409, "ContainerAlreadyExists") { try await f.backend.createContainer(container) }

            _ = try await f.backend.putBlob(BlobID(container: container, name: "a.txt"), data: Data("a".utf8), metadata: [:])
            try await f.backend.deleteContainer(container)
            #expect(try await f.backend.listContainers(account: account).isEmpty)
            await expectCloudError(404, "ContainerNotFound") { try await f.backend.deleteContainer(container) }
            await expectCloudError(404, "ContainerNotFound") { try await f.backend.listBlobs(container: container, prefix: nil) }
            await expectCloudError(400, "InvalidResourceName") { try await f.backend.createContainer(ContainerID(account: account, name: "Bad_Name")) }
        }
    }

    @Test("blobs are put, read, listed by prefix, overwritten and deleted", arguments: BackendUnderTest.all)
    func blobs(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let hello = BlobID(container: f.container, name: "records/hello.txt")
            let put = try await f.backend.putBlob(hello, data: Data("hello world".utf8), metadata: ["kind": "greeting"])
            #expect(put.contentLength == 11)
            #expect(put.contentMD5 == "XrY7u+Ae7tCTyyK7j1rNww==")  // MD5("hello world"), base64
            #expect(try await f.backend.getBlob(hello) == Data("hello world".utf8))
            let properties = try await f.backend.getBlobProperties(hello)
            #expect(properties.metadata == ["kind": "greeting"])
            #expect(properties.copyStatus == nil)

            let other = BlobID(container: f.container, name: "vhds/one.vhd")
            _ = try await f.backend.putBlob(other, data: Data(repeating: 7, count: 4096), metadata: [:])
            #expect(try await f.backend.listBlobs(container: f.container, prefix: "records/").map(\.id) == [hello])
            #expect(Set(try await f.backend.listBlobs(container: f.container, prefix: nil).map(\.id)) == [hello, other])

            _ = try await f.backend.putBlob(hello, data: Data("replaced".utf8), metadata: [:])
            #expect(try await f.backend.getBlob(hello) == Data("replaced".utf8))
            #expect(try await f.backend.getBlobProperties(hello).metadata.isEmpty)

            try await f.backend.deleteBlob(hello)
            await expectCloudError(404, "BlobNotFound") { try await f.backend.getBlob(hello) }
            await expectCloudError(404, "BlobNotFound") { try await f.backend.deleteBlob(hello) }
            #expect(try await f.backend.listBlobs(container: f.container, prefix: nil).map(\.id) == [other])
        }
    }

    @Test("a blob is copied between two labs' storage accounts", arguments: BackendUnderTest.all)
    func blobCopy(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let source = BlobID(container: f.container, name: "image.vhd")
            let data = try Requests.smallVHD("copy-source")
            let put = try await f.backend.putPageBlob(source, data: data, metadata: ["ImagePath": "Windows/Server.json"])
            let destinationContainer = ContainerID(account: f.targetLab.storageAccount, name: "imports")
            try await f.backend.createContainer(destinationContainer)
            let destination = BlobID(container: destinationContainer, name: "image.vhd")

            let started = try await f.backend.startBlobCopy(from: source, to: destination)
            #expect(started.copyStatus == .pending || started.copyStatus == .success)
            let done = try await finishedCopy(destination, on: f.backend)
            #expect(done.copyStatus == .success)
            #expect(done.contentLength == Int64(data.count))
            #expect(done.contentMD5 == put.contentMD5)
            #expect(done.metadata == ["ImagePath": "Windows/Server.json"])
            #expect(done.blobType == .pageBlob, "a copy is its source's kind of blob")
            #expect(try await f.backend.getBlob(destination) == data)

            let missing = BlobID(container: f.container, name: "missing.vhd")
            await expectCloudError(404, "BlobNotFound") { try await f.backend.startBlobCopy(from: missing, to: destination) }
            await expectCloudError(409, "NoPendingCopyOperation") { try await f.backend.abortBlobCopy(destination) }
        }
    }

    @Test("a leased blob can be neither leased again nor deleted until released", arguments: BackendUnderTest.all)
    func leases(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let lock = BlobID(container: f.container, name: "locks/factory.lock")
            _ = try await f.backend.putBlob(lock, data: Data(), metadata: [:])
            let lease = try await f.backend.acquireLease(lock, duration: 60, proposedLeaseID: "11111111-0000-4000-8000-000000000001")
            await expectCloudError(409, "LeaseAlreadyPresent") {
                try await f.backend.acquireLease(lock, duration: 60, proposedLeaseID: "22222222-0000-4000-8000-000000000002")
            }
            await expectCloudError(412, "LeaseIdMissing") { try await f.backend.deleteBlob(lock) }
            try await f.backend.renewLease(lock, leaseID: lease)
            await expectCloudError(409, "LeaseIdMismatchWithLeaseOperation") { try await f.backend.releaseLease(lock, leaseID: "33333333-0000-4000-8000-000000000003") }
            // Blob storage takes only GUIDs as lease ids.
            await expectCloudError(400, "InvalidHeaderValue") { try await f.backend.releaseLease(lock, leaseID: "run-20261202") }
            try await f.backend.releaseLease(lock, leaseID: lease)
            try await f.backend.deleteBlob(lock)
        }
    }

    @Test("a VHD is a page blob: sized in whole pages, only written pages sent, its MD5 the writer's; a copy cannot change a blob's kind", arguments: BackendUnderTest.all)
    func pageBlobs(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            // A disk with data at its start, a hole, data again, and zeros up to its footer.
            var data = Data(count: 3 << 20)
            data.replaceSubrange(0..<1000, with: Data(repeating: 1, count: 1000))
            data.replaceSubrange((2 << 20)..<((2 << 20) + 512), with: Data(repeating: 2, count: 512))
            #expect(PageBlobLayout.writtenRuns(data) == [0..<1024, (2 << 20)..<((2 << 20) + 512)])
            let vhd = BlobID(container: f.container, name: "disk.vhd")
            let put = try await f.backend.putPageBlob(vhd, data: data, metadata: ["kind": "disk"])
            #expect(put.blobType == .pageBlob)
            let read = try await f.backend.getBlobProperties(vhd)
            #expect(read.blobType == .pageBlob)
            #expect(read.contentLength == Int64(data.count))
            #expect(read.contentMD5 == put.contentMD5 && read.contentMD5 != nil)
            #expect(read.metadata == ["kind": "disk"])
            #expect(try await f.backend.getBlob(vhd) == data)
            #expect(try await f.backend.listBlobs(container: f.container, prefix: "disk").map(\.blobType) == [.pageBlob])

            await expectCloudError(400, "InvalidHeaderValue") {
                try await f.backend.putPageBlob(BlobID(container: f.container, name: "odd.vhd"), data: Data(count: 1000), metadata: [:])
            }
            // A block blob keeps its kind, and a copy onto it from a page blob is refused.
            let record = BlobID(container: f.container, name: "record.json")
            #expect(try await f.backend.putBlob(record, data: Data("{}".utf8), metadata: [:]).blobType == .blockBlob)
            #expect(try await f.backend.getBlobProperties(record).blobType == .blockBlob)
            await expectCloudError(409, "InvalidBlobType") { try await f.backend.startBlobCopy(from: vhd, to: record) }
        }
    }

    // MARK: Custom images

    @Test("custom images are created, read, listed and deleted; the same PUT twice is fine", arguments: BackendUnderTest.all)
    func customImages(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let container = ContainerID(account: f.targetLab.storageAccount, name: "vhds")
            try await f.backend.createContainer(container)
            let vhd = BlobID(container: container, name: "server-2022.vhd")
            _ = try await f.backend.putPageBlob(vhd, data: try Requests.smallVHD("server-2022"), metadata: [:])

            let id = CustomImageID(lab: f.targetLab.id, name: "Server2022-20260101")
            let request = Requests.image(id, vhd: vhd, tags: ["ImagePath": "Windows/Server 2022.json"])
            try await succeed(try await f.backend.createCustomImage(request), on: f.backend)
            let image = try await f.backend.getCustomImage(id)
            #expect(image.provisioningState == "Succeeded")
            #expect(image.tags == ["ImagePath": "Windows/Server 2022.json"])
            #expect(image.osType == .windows)
            #expect(image.sysprep)
            // The VHD's URL as the service knows it (host-style in Azure, path-style on local serve).
            #expect(image.vhd?.hasSuffix("/vhds/server-2022.vhd") == true && image.vhd?.contains(container.account.name) == true)
            #expect(try await f.backend.listCustomImages(lab: f.targetLab.id).map(\.id) == [id])
            #expect(try await f.backend.listCustomImages(lab: f.factoryLab.id).isEmpty)

            // A retried PUT of the same image is accepted and changes nothing.
            try await succeed(try await f.backend.createCustomImage(request), on: f.backend)
            #expect(try await f.backend.listCustomImages(lab: f.targetLab.id).count == 1)
            #expect(try await f.backend.getCustomImage(id).createdAt == image.createdAt)

            // The same name from a different VHD is a conflict.
            let otherVHD = BlobID(container: container, name: "other.vhd")
            _ = try await f.backend.putPageBlob(otherVHD, data: try Requests.smallVHD("other"), metadata: [:])
            await expectCloudError(409, "Conflict") { try await f.backend.createCustomImage(Requests.image(id, vhd: otherVHD)) }

            // A VHD uploaded as a block blob is refused, as Azure refuses it.
            let blockVHD = BlobID(container: container, name: "block.vhd")
            _ = try await f.backend.putBlob(blockVHD, data: try Requests.smallVHD("block"), metadata: [:])
            await expectCloudError(400, "BadRequest") {
                try await f.backend.createCustomImage(Requests.image(CustomImageID(lab: f.targetLab.id, name: "block"), vhd: blockVHD))
            }

            // DevTest Labs takes VHDs only from the lab's own storage account.
            let foreign = BlobID(container: f.container, name: "foreign.vhd")
            _ = try await f.backend.putPageBlob(foreign, data: try Requests.smallVHD("foreign"), metadata: [:])
            await expectCloudError(400, "InvalidVhdLocation") {
                try await f.backend.createCustomImage(Requests.image(CustomImageID(lab: f.targetLab.id, name: "foreign"), vhd: foreign))
            }

            try await succeed(try await f.backend.deleteCustomImage(id), on: f.backend)
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.getCustomImage(id) }
            await expectGone { try await f.backend.deleteCustomImage(id) }
            #expect(try await f.backend.listCustomImages(lab: f.targetLab.id).isEmpty)
        }
    }

    // MARK: Errors

    @Test("missing resources are 404 with Azure's codes", arguments: BackendUnderTest.all)
    func notFoundCodes(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let vm = VirtualMachineID(lab: f.factoryLab.id, name: "nosuchvm")
            let vmError = await expectCloudError(404, "ResourceNotFound") { try await f.backend.getVirtualMachine(vm) }
            #expect(vmError?.isNotFound == true)
            #expect(vmError?.isTransient == false)
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.stopVirtualMachine(vm) }
            await expectGone { try await f.backend.deleteVirtualMachine(vm) }
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.beginDiskExport(vm, to: BlobID(container: f.container, name: "x.vhd"), accessSeconds: 3600) }
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.getCustomImage(CustomImageID(lab: f.factoryLab.id, name: "nosuchimage")) }

            await expectCloudError(404, "BlobNotFound") { try await f.backend.getBlobProperties(BlobID(container: f.container, name: "nosuchblob")) }
            await expectCloudError(404, "BlobNotFound") { try await f.backend.getBlob(BlobID(container: f.container, name: "nosuchblob")) }
            let noContainer = ContainerID(account: f.factoryLab.storageAccount, name: "nosuchcontainer")
            await expectCloudError(404, "ContainerNotFound") { try await f.backend.getBlob(BlobID(container: noContainer, name: "a")) }
            await expectCloudError(404, "ContainerNotFound") {
                try await f.backend.putBlob(BlobID(container: noContainer, name: "a"), data: Data("a".utf8), metadata: [:])
            }

            let gallery = GalleryID(subscriptionId: f.subscriptionId, resourceGroup: "rg-factory", name: "NoSuchGallery")
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.getGallery(gallery) }
            let definition = GalleryImageDefinitionID(gallery: gallery, name: "Server")
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.getImageDefinition(definition) }
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.getImageVersion(GalleryImageVersionID(definition: definition, version: "1.0.0")) }
            await expectGone { try await f.backend.deleteDeployment(subscriptionId: f.subscriptionId, resourceGroup: "rg-factory", name: "nosuchdeployment") }
        }
    }

    // MARK: Galleries

    @Test("a gallery, an image definition and a version are created; replication reaches Completed", arguments: BackendUnderTest.all)
    func galleries(_ under: BackendUnderTest) async throws {
        try await under.with { f in
            let galleryID = GalleryID(subscriptionId: f.subscriptionId, resourceGroup: "rg-factory", name: "FactoryGallery")
            try await succeed(try await f.backend.createGallery(galleryID, location: "West Europe", description: "golden images"), on: f.backend)
            let gallery = try await f.backend.getGallery(galleryID)
            #expect(gallery.provisioningState == "Succeeded")
            #expect(gallery.description == "golden images")
            // Creating it again is an idempotent PUT.
            try await succeed(try await f.backend.createGallery(galleryID, location: "westeurope", description: "golden images"), on: f.backend)
            await expectCloudError(400, "InvalidParameter") {
                try await f.backend.createGallery(GalleryID(subscriptionId: f.subscriptionId, resourceGroup: "rg-factory", name: "bad-"), location: "westeurope", description: "")
            }

            let definitionID = GalleryImageDefinitionID(gallery: galleryID, name: "WindowsServer2022")
            let definition = GalleryImageDefinition(id: definitionID, location: "westeurope", osType: .windows, osState: .generalized,
                                                    publisher: "Contoso", offer: "Factory", sku: "Server2022", provisioningState: "")
            try await succeed(try await f.backend.createImageDefinition(definition), on: f.backend)
            let read = try await f.backend.getImageDefinition(definitionID)
            #expect(read.provisioningState == "Succeeded")
            #expect(read.osState == .generalized && read.sku == "Server2022")
            var changed = definition
            changed.osState = .specialized
            await expectCloudError(409, "PropertyChangeNotAllowed") { try await f.backend.createImageDefinition(changed) }

            let vhd = BlobID(container: f.container, name: "server2022.vhd")
            _ = try await f.backend.putPageBlob(vhd, data: try Requests.smallVHD("server2022"), metadata: [:])
            let versionID = GalleryImageVersionID(definition: definitionID, version: "1.0.0")
            let request = GalleryImageVersionRequest(id: versionID, location: "westeurope", sourceVHD: vhd,
                                                     targetRegions: [TargetRegion(name: "westeurope"), TargetRegion(name: "eastus", regionalReplicaCount: 2)],
                                                     tags: ["ImagePath": "Windows/Server 2022.json"])
            try await succeed(try await f.backend.createImageVersion(request), on: f.backend)
            let version = try await f.backend.getImageVersion(versionID)
            #expect(version.aggregatedReplicationState == "Completed")
            #expect(version.provisioningState == "Succeeded")
            #expect(version.replication.map(\.region) == ["westeurope", "eastus"])
            #expect(version.replication.allSatisfy { $0.state == "Completed" && $0.progress == 100 })
            #expect(version.tags == ["ImagePath": "Windows/Server 2022.json"])
            #expect(try await f.backend.listImageVersions(definitionID).map(\.id) == [versionID])
            // A repeated PUT either conflicts (the local cloud) or updates in place (ARM's createOrUpdate); never a second version.
            if let handle = try? await f.backend.createImageVersion(request) { try await succeed(handle, on: f.backend) }
            #expect(try await f.backend.listImageVersions(definitionID).count == 1)
            var badVersion = request
            badVersion.id.version = "1.0"
            await expectCloudError(400, "InvalidParameter") { try await f.backend.createImageVersion(badVersion) }
            // A version from a block blob is refused, as Azure refuses it.
            let blockVHD = BlobID(container: f.container, name: "block.vhd")
            _ = try await f.backend.putBlob(blockVHD, data: try Requests.smallVHD("block"), metadata: [:])
            var fromBlock = request
            fromBlock.id.version = "1.0.1"
            fromBlock.sourceVHD = blockVHD
            await expectCloudError(400, "BadRequest") { try await f.backend.createImageVersion(fromBlock) }

            try await succeed(try await f.backend.deleteImageVersion(versionID), on: f.backend)
            await expectCloudError(404, "ResourceNotFound") { try await f.backend.getImageVersion(versionID) }
            #expect(try await f.backend.listImageVersions(definitionID).isEmpty)
        }
    }
}
