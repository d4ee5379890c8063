import FactoryModel
import Foundation
import LocalCloud
import Testing

/// What only the local cloud can be asked to show: its settings (latency, throttling, faults,
/// quotas), its files (sparse VHDs that qemu reads), its log and its crash safety. Requests still
/// go through `any CloudBackend` wherever the protocol has the call.
@Suite("LocalCloud behaviour")
struct LocalCloudBehaviourTests {
    @Test("copies reading one source share its bandwidth fairly: two at once take twice as long, a third source is not slowed")
    func perSourceBandwidth() async throws {
        var latency = LatencyProfile.instant
        latency.name = "shared-source"
        latency.sourceBytesPerSecond = 100_000
        try await LocalCloudFixture.with(settings: LocalCloudSettings(latency: latency, throttle: .off, faults: .none)) { local in
            let cloud = local.cloud
            let source = BlobID(container: local.fixture.container, name: "golden.vhd")
            _ = try await cloud.putPageBlob(source, data: try Requests.smallVHD("golden"), metadata: [:])
            let other = BlobID(container: local.fixture.container, name: "other.vhd")
            _ = try await cloud.putPageBlob(other, data: try Requests.smallVHD("other"), metadata: [:])
            let target = ContainerID(account: local.fixture.targetLab.storageAccount, name: "copies")
            try await cloud.createContainer(target)
            // Alone, a copy takes data ÷ bandwidth.
            let alone = try await cloud.startBlobCopy(from: source, to: BlobID(container: target, name: "alone.vhd"))
            let single = try #require(alone.retryAfter)
            #expect(single > 0.01, "the copy reads data at the source's pace")
            _ = try await finishedCopy(BlobID(container: target, name: "alone.vhd"), on: cloud)
            // Two at once from the same source: each gets half, both end at twice the time; a copy of another source keeps its pace.
            let a = BlobID(container: target, name: "a.vhd"), b = BlobID(container: target, name: "b.vhd"), c = BlobID(container: target, name: "c.vhd")
            _ = try await cloud.startBlobCopy(from: source, to: a)
            _ = try await cloud.startBlobCopy(from: source, to: b)
            _ = try await cloud.startBlobCopy(from: other, to: c)
            let pa = try #require(try await cloud.getBlobProperties(a).retryAfter)
            let pb = try #require(try await cloud.getBlobProperties(b).retryAfter)
            let pc = try #require(try await cloud.getBlobProperties(c).retryAfter)
            #expect(abs(pa - 2 * single) < 0.01 && abs(pb - 2 * single) < 0.01, "\(pa) \(pb) vs \(single)")
            #expect(abs(pc - single) < 0.2 * single, "another source is not slowed: \(pc) vs \(single)")
        }
    }

    @Test("a copy moves only its source's written pages: 64 MiB holding 1 MiB of data copies as fast as 1 MiB")
    func copiesMoveWrittenPages() async throws {
        var latency = LatencyProfile.instant
        latency.name = "shared-source"
        latency.sourceBytesPerSecond = 1_048_576  // 1 MiB/s: the copy's time says how much it read
        try await LocalCloudFixture.with(settings: LocalCloudSettings(latency: latency, throttle: .off, faults: .none)) { local in
            let cloud = local.cloud
            var sparse = Data(count: 64 << 20)
            sparse.replaceSubrange(0..<(1 << 20), with: Data(repeating: 9, count: 1 << 20))
            let source = BlobID(container: local.fixture.container, name: "sparse.vhd")
            _ = try await cloud.putPageBlob(source, data: sparse, metadata: [:])
            let allocated = SparseFile.allocatedBytes(try await cloud.blobFile(source))
            #expect(allocated >= 1 << 20 && allocated < 2 << 20, "only the written pages are stored: \(allocated) bytes")
            let copy = try await cloud.startBlobCopy(from: source, to: BlobID(container: local.fixture.container, name: "copy.vhd"))
            let seconds = try #require(copy.retryAfter)
            #expect(seconds > 0.9 && seconds < 2.1, "1 MiB of data at 1 MiB/s, not 64 MiB: \(seconds) s")
            #expect(copy.blobType == .pageBlob)
        }
    }

    // MARK: Idempotency and quotas

    @Test("createLab twice returns the same lab and keeps one record; a bad lab name is refused")
    func createLabIsIdempotent() async throws {
        try await LocalCloudFixture.with { local in
            let again = try await local.cloud.createLab(LocalCloudFixture.factoryLabID, location: "westeurope")
            #expect(again == local.fixture.factoryLab)
            let labs = try await local.cloud.listLabs(subscriptionId: LocalCloudFixture.subscription)
            #expect(labs.count == 2)
            #expect(try await local.cloud.allLabs().map(\.id.name) == ["FactoryLab", "TargetLab"])
            let bad = LabID(subscriptionId: LocalCloudFixture.subscription, resourceGroup: "rg", name: "no/slashes")
            await expectCloudError(400, "InvalidResourceName") { try await local.cloud.createLab(bad, location: "westeurope") }
        }
    }

    @Test("the deployments quota per resource group refuses one more until a deployment is deleted")
    func deploymentQuota() async throws {
        var settings = LocalCloudFixture.instant
        settings.maxDeploymentsPerResourceGroup = 3
        try await LocalCloudFixture.with(settings: settings) { local in
            let backend: any CloudBackend = local.cloud
            let lab = local.fixture.factoryLab.id
            for i in 1...3 {
                try await succeed(try await backend.deployVirtualMachine(Requests.vm(VirtualMachineID(lab: lab, name: "vm\(i)"))), on: backend)
            }
            let fourth = VirtualMachineID(lab: lab, name: "vm4")
            let error = await expectCloudError(409, "DeploymentQuotaExceeded") { try await backend.deployVirtualMachine(Requests.vm(fourth)) }
            #expect(error?.message.contains("'3'") == true)
            await expectCloudError(404, "ResourceNotFound") { try await backend.getVirtualMachine(fourth) }

            // Another resource group has its own quota.
            let elsewhere = VirtualMachineID(lab: local.fixture.targetLab.id, name: "vm4")
            try await succeed(try await backend.deployVirtualMachine(Requests.vm(elsewhere)), on: backend)

            try await backend.deleteDeployment(subscriptionId: lab.subscriptionId, resourceGroup: lab.resourceGroup, name: "deploy-vm1")
            try await succeed(try await backend.deployVirtualMachine(Requests.vm(fourth)), on: backend)
            let names = try await backend.listDeployments(subscriptionId: lab.subscriptionId, resourceGroup: lab.resourceGroup).map(\.name)
            #expect(Set(names) == ["deploy-vm2", "deploy-vm3", "deploy-vm4"])
        }
    }

    // MARK: Time

    @Test("with the fast profile, long-running operations report InProgress, then Succeeded")
    func longRunningPolling() async throws {
        // The fast profile with a 3 s deployment: long enough that a loaded CI machine still polls while it runs.
        var profile = LatencyProfile.fast
        profile.deployment = 3
        try await LocalCloudFixture.with(settings: LocalCloudSettings(latency: profile, throttle: .off, faults: .none)) { local in
            let backend: any CloudBackend = local.cloud
            let id = VirtualMachineID(lab: local.fixture.factoryLab.id, name: "slowvm")
            let handle = try await backend.deployVirtualMachine(Requests.vm(id, artifacts: ["linux-git", "linux-docker"]))
            #expect(handle.retryAfter > 0)
            guard case .inProgress(let retryAfter) = try await backend.pollOperation(handle) else {
                Issue.record("A fresh deployment should be in progress")
                return
            }
            #expect(retryAfter > 0 && retryAfter <= 3.2)
            let creating = try await backend.getVirtualMachine(id)
            #expect(creating.provisioningState == "Creating")
            #expect(creating.retryAfter != nil)

            #expect(try await finish(handle, on: backend) == .succeeded)
            let vm = try await backend.getVirtualMachine(id)
            #expect(vm.provisioningState == "Succeeded" && vm.powerState == "Running")
            #expect(vm.artifacts.map(\.status) == ["Succeeded", "Succeeded"])

            // A gallery version replicates region by region.
            let gallery = GalleryID(subscriptionId: LocalCloudFixture.subscription, resourceGroup: "rg-factory", name: "g1")
            try await succeed(try await backend.createGallery(gallery, location: "westeurope", description: ""), on: backend)
            let definition = GalleryImageDefinition(id: GalleryImageDefinitionID(gallery: gallery, name: "d1"), location: "westeurope",
                                                    osType: .windows, osState: .generalized, publisher: "p", offer: "o", sku: "s", provisioningState: "")
            try await succeed(try await backend.createImageDefinition(definition), on: backend)
            let vhd = BlobID(container: local.fixture.container, name: "v.vhd")
            _ = try await backend.putPageBlob(vhd, data: try Requests.smallVHD("v"), metadata: [:])
            let versionID = GalleryImageVersionID(definition: definition.id, version: "1.0.0")
            let versionHandle = try await backend.createImageVersion(GalleryImageVersionRequest(
                id: versionID, location: "westeurope", sourceVHD: vhd, targetRegions: [TargetRegion(name: "westeurope"), TargetRegion(name: "eastus")], tags: [:]))
            let replicating = try await backend.getImageVersion(versionID)
            #expect(replicating.aggregatedReplicationState == "InProgress")
            #expect(replicating.replication.allSatisfy { $0.state == "Replicating" })
            #expect(try await finish(versionHandle, on: backend) == .succeeded)
            #expect(try await backend.getImageVersion(versionID).aggregatedReplicationState == "Completed")
        }
    }

    @Test("ARM write throttling: with a bucket of 3 refilled 1 per 4 s, the 4th write is 429 with Retry-After")
    func throttling() async throws {
        var throttle = ThrottleSettings.azure
        throttle.capacity = 3
        throttle.refillPerSecond = 0.25  // slow enough that a loaded machine still makes 4 writes before a refill
        try await LocalCloudFixture.with(settings: LocalCloudSettings(latency: .instant, throttle: throttle, faults: .none)) { local in
            let backend: any CloudBackend = local.cloud
            // A subscription of its own, so the fixture's lab creation has not used its tokens.
            let subscription = "99999999-8888-4777-8666-555555555555"
            func gallery(_ n: Int, in sub: String = subscription) -> GalleryID {
                GalleryID(subscriptionId: sub, resourceGroup: "rg", name: "gallery\(n)")
            }
            for n in 1...3 { _ = try await backend.createGallery(gallery(n), location: "westeurope", description: "") }
            let error = await expectCloudError(429, "SubscriptionRequestsThrottled") {
                try await backend.createGallery(gallery(4), location: "westeurope", description: "")
            }
            let retryAfter = try #require(error?.retryAfter)
            #expect(retryAfter > 0 && retryAfter <= 4)
            #expect(error?.isTransient == true)
            await expectCloudError(404, "ResourceNotFound") { try await backend.getGallery(gallery(4)) }

            // Reads are not throttled, and another subscription has its own bucket.
            for _ in 0..<10 { _ = try await backend.getGallery(gallery(1)) }
            _ = try await backend.createGallery(gallery(1, in: "77777777-8888-4777-8666-555555555555"), location: "westeurope", description: "")

            // After Retry-After, the write goes through.
            elapse(retryAfter + 0.05, on: backend)
            _ = try await backend.createGallery(gallery(4), location: "westeurope", description: "")
            #expect(try await backend.getGallery(gallery(4)).id == gallery(4))
        }
    }

    @Test("a request cancelled while it waits leaves no trace, and the cloud keeps working")
    func cancellation() async throws {
        // Every copy hangs (an injected time-out of a minute): the only way out is cancellation.
        var faults = FaultSettings(seed: 7, timeoutSeconds: 60)
        var rates = FaultSettings.Rates()
        rates.timeout = 1
        faults.rates[.copy] = rates
        try await LocalCloudFixture.with(settings: LocalCloudSettings(latency: .instant, throttle: .off, faults: faults)) { local in
            let backend: any CloudBackend = local.cloud
            let source = BlobID(container: local.fixture.container, name: "source.vhd")
            let data = try Requests.smallVHD("source")
            _ = try await backend.putBlob(source, data: data, metadata: [:])
            let destination = BlobID(container: local.fixture.container, name: "destination.vhd")

            let clock = try #require(local.cloud.clock as? ManualClock)
            let task = Task { try await backend.startBlobCopy(from: source, to: destination) }
            await clock.waitForSleepers(1)  // the copy hangs in its injected time-out
            task.cancel()
            let result = await task.result
            #expect(clock.sleeperCount == 0, "cancellation ended the wait, not the 60 s time-out")
            #expect(throws: CancellationError.self) { try result.get() }

            await expectCloudError(404, "BlobNotFound") { try await backend.getBlobProperties(destination) }
            #expect(try await backend.getBlob(source) == data)
            try await expectConsistent(local.cloud)

            // The same state directory, opened without faults, is whole and works.
            let reopened = try LocalCloud(stateDirectory: local.directory, settings: LocalCloudFixture.instant)
            _ = try await reopened.startBlobCopy(from: source, to: destination)
            #expect(try await finishedCopy(destination, on: reopened).copyStatus == .success)
            #expect(try await reopened.getBlob(destination) == data)
            try await expectConsistent(reopened)

            let log = try OperationsLogLines.read(local.directory)
            #expect(log.contains { $0["kind"] as? String == "startBlobCopy" && $0["result"] as? String == "Canceled" })
        }
    }

    // MARK: Faults

    /// The outcome of 60 reads under a 50% transient-fault rate: true where the read failed with 503.
    private func faultPattern(seed: UInt64) async throws -> [Bool] {
        var rates = FaultSettings.Rates()
        rates.transient = 0.5
        let faults = FaultSettings(seed: seed, rates: [.read: rates])
        var pattern: [Bool] = []
        try await LocalCloudFixture.with(settings: LocalCloudSettings(latency: .instant, throttle: .off, faults: faults)) { local in
            let backend: any CloudBackend = local.cloud
            for _ in 0..<60 {
                do {
                    _ = try await backend.getLab(local.fixture.factoryLab.id)
                    pattern.append(false)
                } catch let error as CloudError {
                    #expect(error.status == 503 && error.code == "ServiceUnavailable" && error.isTransient)
                    pattern.append(true)
                }
            }
        }
        return pattern
    }

    @Test("fault injection is deterministic: the same seed gives the same failures, another seed others")
    func faultDeterminism() async throws {
        let first = try await faultPattern(seed: 42)
        let again = try await faultPattern(seed: 42)
        let other = try await faultPattern(seed: 43)
        #expect(first == again)
        #expect(first != other)
        let failures = first.filter { $0 }.count
        #expect((10...50).contains(failures), "a 50% rate over 60 reads failed \(failures) times")
    }

    @Test("an export's disk access is held until its copy ends: revoked earlier, the copy fails, as in Azure")
    func exportNeedsItsAccessUntilTheCopyEnds() async throws {
        let clock = ManualClock()
        var settings = LocalCloudFixture.instant
        settings.latency.copyBase = 30
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("localcloud-tests-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cloud = try LocalCloud(stateDirectory: directory, settings: settings, clock: clock)
        let factory = try await cloud.createLab(LocalCloudFixture.factoryLabID, location: "westeurope")
        let container = ContainerID(account: factory.storageAccount, name: "imagefactoryvhds")
        try await cloud.createContainer(container)
        let vm = VirtualMachineID(lab: factory.id, name: "export02")
        _ = try await cloud.deployVirtualMachine(Requests.generalizedVM(vm))
        clock.advance(by: 60)
        #expect(try await cloud.getVirtualMachine(vm).isDeallocated)

        // Held until the copy ends: it succeeds.
        let kept = BlobID(container: container, name: "kept.vhd")
        let first = try await cloud.beginDiskExport(vm, to: kept, accessSeconds: 3600)
        #expect(try await cloud.getBlobProperties(kept).copyStatus == .pending)
        clock.advance(by: 31)
        #expect(try await cloud.getBlobProperties(kept).copyStatus == .success)
        _ = try await cloud.endDiskExport(first)

        // Revoked while the copy is pending: the copy fails at once.
        let early = BlobID(container: container, name: "early.vhd")
        let second = try await cloud.beginDiskExport(vm, to: early, accessSeconds: 3600)
        clock.advance(by: 5)
        #expect(try await cloud.getBlobProperties(early).copyStatus == .pending)
        _ = try await cloud.endDiskExport(second)
        let failed = try await cloud.getBlobProperties(early)
        #expect(failed.copyStatus == .failed)
        #expect(failed.copyStatusDescription?.contains("revoked") == true)
    }

    @Test("a copy with copyFailure=1 ends failed, and its blob cannot become a custom image")
    func copyFailure() async throws {
        var rates = FaultSettings.Rates()
        rates.copyFailure = 1
        let faults = FaultSettings(seed: 1, rates: [.copy: rates, .export: rates])
        try await LocalCloudFixture.with(settings: LocalCloudSettings(latency: .instant, throttle: .off, faults: faults)) { local in
            let backend: any CloudBackend = local.cloud
            let container = ContainerID(account: local.fixture.targetLab.storageAccount, name: "vhds")
            try await backend.createContainer(container)
            let source = BlobID(container: local.fixture.container, name: "source.vhd")
            _ = try await backend.putPageBlob(source, data: try Requests.smallVHD("source"), metadata: [:])
            let destination = BlobID(container: container, name: "copy.vhd")
            _ = try await backend.startBlobCopy(from: source, to: destination)
            let copy = try await finishedCopy(destination, on: backend)
            #expect(copy.copyStatus == .failed)
            #expect(copy.copyStatusDescription?.isEmpty == false)
            #expect(copy.contentMD5 == nil)
            await expectCloudError(400, "InvalidVhd") {
                try await backend.createCustomImage(Requests.image(CustomImageID(lab: local.fixture.targetLab.id, name: "broken"), vhd: destination))
            }

            // A disk export fails the same way.
            let vm = VirtualMachineID(lab: local.fixture.factoryLab.id, name: "export01")
            try await succeed(try await backend.deployVirtualMachine(Requests.generalizedVM(vm)), on: backend)
            _ = try await waitForVM(vm, on: backend) { $0.isDeallocated }
            let vhd = BlobID(container: local.fixture.container, name: "export01.vhd")
            _ = try await backend.beginDiskExport(vm, to: vhd, accessSeconds: 3600)
            #expect(try await finishedCopy(vhd, on: backend).copyStatus == .failed)
        }
    }

    // MARK: Files

    /// Deploys a generalized Windows VM and exports its disk into the factory container.
    private func capturedDisk(_ local: LocalCloudFixture, name: String) async throws -> BlobID {
        let backend: any CloudBackend = local.cloud
        let vm = VirtualMachineID(lab: local.fixture.factoryLab.id, name: name)
        try await succeed(try await backend.deployVirtualMachine(Requests.generalizedVM(vm, tags: ["ImagePath": "Windows/\(name).json"])), on: backend)
        _ = try await waitForVM(vm, on: backend) { $0.isDeallocated }
        let vhd = BlobID(container: local.fixture.container, name: "\(name).vhd")
        let export = try await backend.beginDiskExport(vm, to: vhd, accessSeconds: 3600)
        #expect(try await finishedCopy(vhd, on: backend).copyStatus == .success)
        _ = try await backend.endDiskExport(export)
        return vhd
    }

    private static var gibDisks: LocalCloudSettings {
        var settings = LocalCloudFixture.instant
        settings.latency.windowsDiskBytes = 1 << 30
        return settings
    }

    /// `qemu-img info -f vpc` (fixed VHDs carry only a footer, so qemu probes them as raw without `-f`).
    private func qemuInfo(_ file: URL) throws -> String {
        let qemu = try #require(Files.executable("qemu-img"),
                                "qemu-img is not installed: install qemu-utils so the VHD files can be checked (`bash scripts/bootstrap.sh --test` does).")
        let (status, output) = try Files.run(qemu, ["info", "-f", "vpc", file.path])
        #expect(status == 0, "qemu-img info failed: \(output)")
        return output
    }

    @Test("exported disks are fixed VHDs with a valid footer that qemu-img reads as vpc of the right size")
    func vhdFooterAndQemu() async throws {
        try await LocalCloudFixture.with { local in
            let vhd = try await capturedDisk(local, name: "footer01")
            let file = try await local.cloud.blobFile(vhd)
            #expect(VirtualDisk.hasValidFooter(file))
            let size = LatencyProfile.instant.windowsDiskBytes
            let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
            #expect((attributes[.size] as? NSNumber)?.int64Value == size + Int64(VirtualDisk.footerSize))
            let info = try qemuInfo(file)
            #expect(info.contains("file format: vpc"), "\(info)")
            #expect(info.contains("(\(size) bytes)"), "qemu-img should report the virtual size \(size): \(info)")

            // A file with a damaged footer is not a VHD.
            let damaged = local.directory.appendingPathComponent("damaged.vhd")
            try FileManager.default.copyItem(at: file, to: damaged)
            let handle = try FileHandle(forWritingTo: damaged)
            try handle.seek(toOffset: UInt64(size) + 70)
            try handle.write(contentsOf: Data([0xFF]))
            try handle.close()
            #expect(!VirtualDisk.hasValidFooter(damaged))
        }
    }

    @Test("a 1 GiB exported disk and its copy stay sparse (under 1% allocated), and qemu-img sees 1 GiB")
    func sparseDisks() async throws {
        try await LocalCloudFixture.with(settings: Self.gibDisks) { local in
            let backend: any CloudBackend = local.cloud
            let vhd = try await capturedDisk(local, name: "sparse01")
            let file = try await local.cloud.blobFile(vhd)
            let virtual: Int64 = 1 << 30
            #expect(try await backend.getBlobProperties(vhd).contentLength == virtual + Int64(VirtualDisk.footerSize))
            #expect(try await backend.getBlobProperties(vhd).blobType == .pageBlob, "a disk exports as a page blob")
            let allocated = SparseFile.allocatedBytes(file)
            #expect(allocated > 0)
            #expect(allocated < virtual / 100, "the exported disk allocates \(allocated) bytes")
            #expect(try qemuInfo(file).contains("(\(virtual) bytes)"))

            let container = ContainerID(account: local.fixture.targetLab.storageAccount, name: "vhds")
            try await backend.createContainer(container)
            let copy = BlobID(container: container, name: "sparse01.vhd")
            _ = try await backend.startBlobCopy(from: vhd, to: copy)
            let copied = try await finishedCopy(copy, on: backend)
            #expect(copied.copyStatus == .success)
            #expect(copied.contentMD5 == (try await backend.getBlobProperties(vhd).contentMD5))
            let copyFile = try await local.cloud.blobFile(copy)
            #expect(SparseFile.allocatedBytes(copyFile) < virtual / 100, "the copy allocates \(SparseFile.allocatedBytes(copyFile)) bytes")
            #expect(VirtualDisk.hasValidFooter(copyFile))
        }
    }

    @Test("the custom image a copy reaches is byte for byte the captured blob, even after the blobs are deleted")
    func customImageIsTheCapturedDisk() async throws {
        try await LocalCloudFixture.with { local in
            let backend: any CloudBackend = local.cloud
            let captured = try await capturedDisk(local, name: "exact01")
            let container = ContainerID(account: local.fixture.targetLab.storageAccount, name: "vhds")
            try await backend.createContainer(container)
            let copy = BlobID(container: container, name: "exact01.vhd")
            _ = try await backend.startBlobCopy(from: captured, to: copy)
            #expect(try await finishedCopy(copy, on: backend).copyStatus == .success)
            let id = CustomImageID(lab: local.fixture.targetLab.id, name: "exact01-image")
            try await succeed(try await backend.createCustomImage(Requests.image(id, vhd: copy)), on: backend)

            let capturedFile = try await local.cloud.blobFile(captured)
            let imageFile = try #require(try await local.cloud.customImageFile(id))
            #expect(FileManager.default.contentsEqual(atPath: capturedFile.path, andPath: imageFile.path))
            let snapshot = try Data(contentsOf: capturedFile)

            // The image keeps its own disk: deleting both blobs leaves it whole.
            try await backend.deleteBlob(copy)
            try await backend.deleteBlob(captured)
            #expect(!FileManager.default.fileExists(atPath: capturedFile.path))
            #expect(try Data(contentsOf: imageFile) == snapshot)
            #expect(try await backend.getCustomImage(id).provisioningState == "Succeeded")
        }
    }

    // MARK: Log and crash safety

    @Test("every line of operations.jsonl is a JSON object with start, end, kind, resource and result")
    func operationsLog() async throws {
        try await LocalCloudFixture.with { local in
            let backend: any CloudBackend = local.cloud
            let blob = BlobID(container: local.fixture.container, name: "log.txt")
            _ = try await backend.putBlob(blob, data: Data("x".utf8), metadata: [:])
            _ = try await backend.getBlob(blob)
            await expectCloudError(404, "BlobNotFound") { try await backend.getBlob(BlobID(container: local.fixture.container, name: "nope")) }

            let lines = try OperationsLogLines.read(local.directory)
            #expect(lines.count >= 6)  // two labs, a container, a put, a get, a failed get
            let parse = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
            for line in lines {
                for key in ["start", "end", "kind", "resource", "result"] {
                    #expect(line[key] is String, "\(key) missing in \(line)")
                }
                let start = try parse.parse(try #require(line["start"] as? String))
                let end = try parse.parse(try #require(line["end"] as? String))
                #expect(start <= end)
            }
            #expect(lines.map { $0["kind"] as? String } .prefix(3) == ["createLab", "createLab", "createContainer"])
            let failed = try #require(lines.last)
            #expect(failed["kind"] as? String == "getBlob")
            #expect(failed["result"] as? String == "BlobNotFound")
            #expect(failed["status"] as? Int == 404)
            #expect(lines.contains { $0["kind"] as? String == "putBlob" && $0["result"] as? String == "ok" })
        }
    }

    @Test("records never point at missing files, and orphan files are swept on open")
    func crashSafety() async throws {
        try await LocalCloudFixture.with { local in
            let backend: any CloudBackend = local.cloud
            let target = ContainerID(account: local.fixture.targetLab.storageAccount, name: "vhds")
            try await backend.createContainer(target)
            let scratch = ContainerID(account: local.fixture.targetLab.storageAccount, name: "scratch")
            try await backend.createContainer(scratch)

            // A mix of what the factory does: capture, copy, overwrite, image, delete.
            let captured = try await capturedDisk(local, name: "crash01")
            for i in 0..<5 {
                let copy = BlobID(container: target, name: "copy\(i).vhd")
                _ = try await backend.startBlobCopy(from: captured, to: copy)
                _ = try await finishedCopy(copy, on: backend)
            }
            _ = try await backend.startBlobCopy(from: captured, to: BlobID(container: target, name: "copy0.vhd"))  // overwrite
            _ = try await backend.putBlob(BlobID(container: target, name: "copy1.vhd"), data: Data("small".utf8), metadata: [:])
            try await backend.deleteBlob(BlobID(container: target, name: "copy2.vhd"))
            _ = try await backend.putBlob(BlobID(container: scratch, name: "a"), data: Data("a".utf8), metadata: [:])
            try await backend.deleteContainer(scratch)
            let image = CustomImageID(lab: local.fixture.targetLab.id, name: "crash-image")
            try await succeed(try await backend.createCustomImage(Requests.image(image, vhd: BlobID(container: target, name: "copy3.vhd"))), on: backend)
            let gone = CustomImageID(lab: local.fixture.targetLab.id, name: "gone-image")
            try await succeed(try await backend.createCustomImage(Requests.image(gone, vhd: BlobID(container: target, name: "copy4.vhd"))), on: backend)
            try await succeed(try await backend.deleteCustomImage(gone), on: backend)

            let counts = try await expectConsistent(local.cloud)
            #expect(counts.blobs == 5)  // captured; copy0, copy1, copy3, copy4 (copy2 and the scratch container are gone)
            #expect(counts.images == 1)

            // A process killed between writing a file and committing its record leaves an orphan:
            // swept on the next open once it is old enough not to be another process's write in flight.
            let blobs = local.directory.appendingPathComponent("blobs")
            let old = blobs.appendingPathComponent("orphan-old.vhd")
            let fresh = blobs.appendingPathComponent("orphan-fresh.vhd")
            try Data("old".utf8).write(to: old)
            try Data("fresh".utf8).write(to: fresh)
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-600)], ofItemAtPath: old.path)
            let reopened = try LocalCloud(stateDirectory: local.directory, settings: LocalCloudFixture.instant)
            #expect(!FileManager.default.fileExists(atPath: old.path))
            #expect(FileManager.default.fileExists(atPath: fresh.path))
            try FileManager.default.removeItem(at: fresh)
            #expect(try await expectConsistent(reopened) == counts)
        }
    }
}

// MARK: - Helpers

/// Reads `operations.jsonl` as JSON objects, requiring every line to parse.
enum OperationsLogLines {
    static func read(_ directory: URL) throws -> [[String: Any]] {
        let text = try String(contentsOf: directory.appendingPathComponent("operations.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            return try #require(object as? [String: Any], "not a JSON object: \(line)")
        }
    }
}

struct StoredCounts: Equatable {
    var blobs: Int
    var images: Int
}

/// Checks the invariant crash safety rests on: every blob and image record points at a file that
/// exists, and every file under `blobs/` belongs to a record. Returns what it counted.
@discardableResult
func expectConsistent(_ cloud: LocalCloud, sourceLocation: SourceLocation = #_sourceLocation) async throws -> StoredCounts {
    var blobFiles = Set<String>()
    var images = 0
    for lab in try await cloud.allLabs() {
        for name in try await cloud.listContainers(account: lab.storageAccount) {
            for blob in try await cloud.listBlobs(container: ContainerID(account: lab.storageAccount, name: name), prefix: nil) {
                let file = try await cloud.blobFile(blob.id)
                #expect(FileManager.default.fileExists(atPath: file.path), "blob \(blob.id) points at missing \(file.lastPathComponent)",
                        sourceLocation: sourceLocation)
                blobFiles.insert(file.lastPathComponent)
            }
        }
        for image in try await cloud.listCustomImages(lab: lab.id) {
            let file = try #require(try await cloud.customImageFile(image.id), sourceLocation: sourceLocation)
            #expect(FileManager.default.fileExists(atPath: file.path), "image \(image.id) points at missing \(file.lastPathComponent)",
                    sourceLocation: sourceLocation)
            images += 1
        }
    }
    let onDisk = try Files.names(in: cloud.stateDirectory.appendingPathComponent("blobs"))
    #expect(onDisk == blobFiles, "files without records: \(onDisk.subtracting(blobFiles)); records without files: \(blobFiles.subtracting(onDisk))",
            sourceLocation: sourceLocation)
    return StoredCounts(blobs: blobFiles.count, images: images)
}
