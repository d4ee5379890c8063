@testable import AzureBackend
import FactoryModel
import Foundation
import LocalCloud
import LocalServe
import Testing

/// Records every request on its way to the real transport.
actor RecordingTransport: HTTPTransport {
    let inner: any HTTPTransport
    private(set) var requests: [HTTPRequestData] = []
    init(_ inner: any HTTPTransport) { self.inner = inner }
    func send(_ request: HTTPRequestData, timeout: Double) async throws -> HTTPResponseData {
        requests.append(request)
        return try await inner.send(request, timeout: timeout)
    }
}

/// The Azure backend against an in-process `local serve` on loopback http, with the local cloud's
/// time on a manual clock the test moves.
struct ServedBackend {
    let backend: AzureBackend
    let recorder: RecordingTransport
    let clock: ManualClock
    let cloud: LocalCloud
    let server: Task<Void, Error>
    let directory: URL
    let factory: Lab
    let target: Lab

    static let subscription = "11111111-2222-4333-8444-555555555555"

    static func make(storageAuth: StorageAuthMode = .entra) async throws -> ServedBackend {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("azure-spec-\(UUID().uuidString)")
        let clock = ManualClock(now: Date())
        let cloud = try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: .instant, throttle: .off, faults: .none), clock: clock)
        let factory = try await cloud.createLab(LabID(subscriptionId: subscription, resourceGroup: "rg-factory", name: "FactoryLab"), location: "westeurope")
        let target = try await cloud.createLab(LabID(subscriptionId: subscription, resourceGroup: "rg-target", name: "TargetLab"), location: "northeurope")
        let tenant = "00000000-0000-0000-0000-000000000001"
        let tokens = TokenAuthority(key: try TokenAuthority.signingKey(stateDirectory: directory), settings: .init())
        let service = LocalServeService(cloud: cloud, settings: LocalServeSettings(pageSize: 2, throttle: .off, tenant: tenant, blobPageSize: 2), tokens: tokens)
        let ports = AsyncStream<Int>.makeStream()
        let server = Task { try await LocalServer(service: service, port: 0).run(onListening: { ports.continuation.yield($0) }) }
        var iterator = ports.stream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CloudError(status: 500, code: "ServeFailed", message: "local serve did not start") }
        let base = "http://127.0.0.1:\(port)"
        let environment = ["AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": "11111111-0000-4000-8000-0000000000bb", "AZURE_CLIENT_SECRET": "spec",
                           "IMAGEFACTORY_ARM_ENDPOINT": base, "AZURE_AUTHORITY_HOST": base]
        let profile = try AzureCloudProfile.resolve(cloud: nil, armEndpoint: nil, environment: environment)
        let recorder = RecordingTransport(try AsyncHTTPTransport.shared(caFile: nil))
        let credential = try CredentialFactory.make(mode: .clientSecret, profile: profile, environment: environment, transport: recorder, clock: SystemClock())
        let http = AzureHTTPClient(profile: profile, transport: recorder, credential: credential, clock: SystemClock(), maxConcurrentWrites: 8,
                                   policy: .init(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.05, requestTimeout: 60))
        return ServedBackend(backend: AzureBackend(http: http, storageAuth: storageAuth), recorder: recorder, clock: clock, cloud: cloud, server: server,
                             directory: directory, factory: factory, target: target)
    }

    func close() {
        server.cancel()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Polls an operation to its end, moving the emulated time by the service's hints.
    func finish(_ handle: OperationHandle) async throws {
        for _ in 0..<2000 {
            switch try await backend.pollOperation(handle) {
            case .succeeded: return
            case .failed(let error): throw error
            case .inProgress(let retryAfter): clock.advance(by: max(0.01, min(retryAfter, 5)))
            }
        }
        throw CloudError(status: 408, code: "TestTimeout", message: "operation did not end")
    }

    func waitForVM(_ id: VirtualMachineID, until done: (LabVirtualMachine) -> Bool) async throws -> LabVirtualMachine {
        for _ in 0..<5000 {
            let vm = try await backend.getVirtualMachine(id)
            if done(vm) { return vm }
            clock.advance(by: 2)
        }
        throw CloudError(status: 408, code: "TestTimeout", message: "VM never got there")
    }

    func waitForCopy(_ blob: BlobID) async throws -> BlobProperties {
        for _ in 0..<5000 {
            let p = try await backend.getBlobProperties(blob)
            if p.copyStatus != .pending { return p }
            clock.advance(by: 2)
        }
        throw CloudError(status: 408, code: "TestTimeout", message: "copy never ended")
    }
}

@Suite("Azure backend requests against the published REST specs", .serialized)
struct BackendRequestSpecTests {
    static let template = Data("""
        {"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
         "parameters": {"newVMName": {"type": "string"}, "labName": {"type": "string"}, "password": {"type": "securestring"}},
         "resources": [{"type": "Microsoft.DevTestLab/labs/virtualmachines", "apiVersion": "2018-09-15",
                        "name": "[concat(parameters('labName'), '/', parameters('newVMName'))]", "location": "westeurope",
                        "properties": {"size": "Standard_DS2_v2", "userName": "factory", "password": "[parameters('password')]",
                                       "galleryImageReference": {"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter",
                                                                 "osType": "Windows", "version": "latest"},
                                       "artifacts": [{"artifactId": "[resourceId('Microsoft.DevTestLab/labs/artifactSources/artifacts', parameters('labName'), 'public repo', 'windows-chrome')]"}]}}]}
        """.utf8)

    /// Calls every `CloudBackend` method the factory uses, the way a run does.
    static func exerciseEveryCall(_ s: ServedBackend) async throws {
        let b = s.backend
        _ = try await b.listLabs(subscriptionId: ServedBackend.subscription)
        _ = try await b.getLab(s.factory.id)
        let vm = VirtualMachineID(lab: s.factory.id, name: "Server2022")
        try await s.finish(try await b.deployVirtualMachine(VMDeploymentRequest(
            vm: vm, template: template, parameters: ["newVMName": vm.name, "labName": vm.lab.name, "password": "P@ss-w0rd-spec", "undeclared": "x"],
            artifacts: [ArtifactReference(artifactId: "/artifactsources/public repo/artifacts/windows-chrome"),
                        ArtifactReference(artifactId: "/artifactsources/public repo/artifacts/windows-sysprep")],
            tags: ["CreatedBy": "ImageFactory"], deploymentName: "imagefactory-server2022")))
        let built = try await s.waitForVM(vm) { $0.isDeallocated }
        #expect(built.generalized, "the generalize artifact was added to the template and ran")
        _ = try await b.listVirtualMachines(lab: s.factory.id)
        try await b.updateVirtualMachineTags(vm, tags: ["CreatedBy": "ImageFactory", "Captured": "no"])
        let container = ContainerID(account: s.factory.storageAccount, name: "imagefactoryvhds")
        try await b.createContainer(container)
        let vhd = BlobID(container: container, name: "Windows/Server 2022.vhd")
        let export = try await b.beginDiskExport(vm, to: vhd, accessSeconds: 3600)
        #expect(try await s.waitForCopy(vhd).copyStatus == .success)
        try await s.finish(try await b.endDiskExport(export))
        _ = try await b.putBlob(BlobID(container: container, name: "Windows/Server 2022.json"), data: Data("{}".utf8), metadata: ["imagepath": "Windows/Server 2022.json"])
        _ = try await b.listBlobs(container: container, prefix: "Windows/")
        _ = try await b.listContainers(account: s.factory.storageAccount)
        let lockBlob = BlobID(container: container, name: "lock")
        _ = try await b.putBlob(lockBlob, data: Data(), metadata: [:])
        let lease = try await b.acquireLease(lockBlob, duration: 60, proposedLeaseID: UUID().uuidString.lowercased())
        try await b.renewLease(lockBlob, leaseID: lease)
        try await b.releaseLease(lockBlob, leaseID: lease)

        // Distribution to the target lab's own account, then its custom image.
        let targetContainer = ContainerID(account: s.target.storageAccount, name: "imagefactoryvhds")
        try await b.createContainer(targetContainer)
        let copy = BlobID(container: targetContainer, name: "Server2022.vhd")
        _ = try await b.startBlobCopy(from: vhd, to: copy)
        #expect(try await s.waitForCopy(copy).copyStatus == .success)
        let image = CustomImageID(lab: s.target.id, name: "Windows_Server-2022")
        try await s.finish(try await b.createCustomImage(CustomImageRequest(id: image, vhd: copy, osType: .windows, sysprep: true, description: "spec",
                                                                             author: "ImageFactory", tags: ["ImagePath": "Windows/Server 2022.json"])))
        _ = try await b.getCustomImage(image)
        _ = try await b.listCustomImages(lab: s.target.id)

        // A gallery version from the same VHD.
        let gallery = GalleryID(subscriptionId: ServedBackend.subscription, resourceGroup: "rg-factory", name: "FactoryGallery")
        try await s.finish(try await b.createGallery(gallery, location: "westeurope", description: "golden images", tags: ["ImageFactoryManaged": "ImageFactory"]))
        _ = try await b.getGallery(gallery)
        let definition = GalleryImageDefinition(id: GalleryImageDefinitionID(gallery: gallery, name: "Server2022"), location: "westeurope", osType: .windows,
                                                osState: .generalized, publisher: "Contoso", offer: "Factory", sku: "Server2022", provisioningState: "")
        try await s.finish(try await b.createImageDefinition(definition))
        _ = try await b.getImageDefinition(definition.id)
        let version = GalleryImageVersionID(definition: definition.id, version: "1.0.0")
        try await s.finish(try await b.createImageVersion(GalleryImageVersionRequest(id: version, location: "westeurope", sourceVHD: vhd,
                                                                                      targetRegions: [TargetRegion(name: "westeurope")], tags: [:])))
        _ = try await b.getImageVersion(version)
        _ = try await b.listImageVersions(definition.id)
        _ = try await b.listImageDefinitions(gallery)
        try await s.finish(try await b.updateImageVersion(version, targetRegions: [TargetRegion(name: "westeurope"), TargetRegion(name: "northeurope", storageAccountType: "Standard_ZRS")],
                                                          excludeFromLatest: true))
        #expect(try await b.getImageVersion(version).excludeFromLatest)
        try await s.finish(try await b.deleteImageVersion(version))
        try await s.finish(try await b.deleteImageDefinition(definition.id))

        // Retirement and cleanup.
        try await s.finish(try await b.deleteCustomImage(image))
        try await b.deleteBlob(copy)
        try await b.deleteContainer(targetContainer)
        try await s.finish(try await b.deleteVirtualMachine(vm))
        _ = try await b.listDeployments(subscriptionId: ServedBackend.subscription, resourceGroup: "rg-factory")
        try await b.deleteDeployment(subscriptionId: ServedBackend.subscription, resourceGroup: "rg-factory", name: "imagefactory-server2022")
    }

    @Test("every ARM request the backend sends matches a published operation: method, path, api-version, query and body")
    func armRequestsMatchSpecs() async throws {
        let catalog = try RestSpecCatalog.bundled.get()
        let served = try await ServedBackend.make()
        defer { served.close() }
        try await Self.exerciseEveryCall(served)
        let sent = await served.recorder.requests
        let arm = sent.filter { $0.url.path.lowercased().hasPrefix("/subscriptions/") }
        // Status URLs of long-running operations are the service's own links, not operations of a spec.
        let operations = arm.filter { request in
            !["/operationresults/", "/operations/", "/operationstatuses/"].contains { request.url.path.lowercased().contains($0) }
        }
        #expect(operations.count >= 25, "the exercise sent \(operations.count) ARM requests")
        var problems: [String] = []
        var covered = Set<String>()
        for request in operations {
            let recorded = RecordedRequest(method: request.method, url: request.url, body: request.body)
            problems += catalog.problems(recorded)
            if let id = catalog.operationId(recorded) { covered.insert(id) }
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        for expected in ["Labs_ListBySubscription", "Labs_Get", "Deployments_CreateOrUpdate", "VirtualMachines_Get", "VirtualMachines_List",
                         "VirtualMachines_Update", "VirtualMachines_Delete", "Disks_GrantAccess", "Disks_RevokeAccess", "CustomImages_CreateOrUpdate",
                         "CustomImages_Get", "CustomImages_List", "CustomImages_Delete", "Deployments_ListByResourceGroup", "Deployments_Delete",
                         "Galleries_CreateOrUpdate", "Galleries_Get", "GalleryImages_CreateOrUpdate", "GalleryImages_Get",
                         "GalleryImageVersions_CreateOrUpdate", "GalleryImageVersions_Get", "GalleryImageVersions_ListByGalleryImage",
                         "GalleryImageVersions_Delete", "GalleryImageVersions_Update", "GalleryImages_ListByGallery", "GalleryImages_Delete",
                         "StorageAccounts_GetProperties"] {
            #expect(covered.contains(expected), "no request matched \(expected); covered: \(covered.sorted())")
        }
        // Nothing secret in any URL, and tokens only in Authorization headers.
        for request in sent where request.url.path.lowercased().hasPrefix("/subscriptions/") {
            #expect(!(request.url.query ?? "").contains("sig="))
            #expect(!String(decoding: request.body ?? Data(), as: UTF8.self).contains("sig="))
        }
    }

    @Test("with --storage-auth key the backend reads the key once per account and signs Blob requests with Shared Key")
    func sharedKeyRequests() async throws {
        let served = try await ServedBackend.make(storageAuth: .key)
        defer { served.close() }
        let container = ContainerID(account: served.factory.storageAccount, name: "keyed")
        try await served.backend.createContainer(container)
        _ = try await served.backend.putBlob(BlobID(container: container, name: "a"), data: Data("a".utf8), metadata: [:])
        _ = try await served.backend.getBlob(BlobID(container: container, name: "a"))
        let sent = await served.recorder.requests
        #expect(sent.filter { $0.url.path.lowercased().hasSuffix("/listkeys") }.count == 1)
        let blobRequests = sent.filter { $0.url.path.lowercased().hasPrefix("/\(served.factory.storageAccount.name.lowercased())/") }
        #expect(blobRequests.count == 3)
        #expect(blobRequests.allSatisfy { $0.header("Authorization")?.hasPrefix("SharedKey \(served.factory.storageAccount.name):") == true })
        #expect(blobRequests.allSatisfy { $0.header("x-ms-version") == AzureHTTPClient.storageVersion && $0.header("x-ms-date") != nil })
    }
    @Test("a page blob goes up as Put Blob (its size, its MD5, no body) then Put Page for each run of written pages, cut at 4 MiB; zero pages are never sent")
    func pageBlobRequests() async throws {
        let served = try await ServedBackend.make()
        defer { served.close() }
        let container = ContainerID(account: served.factory.storageAccount, name: "pages")
        try await served.backend.createContainer(container)
        // 9 MiB: 5 MiB of data, a 3 MiB hole, one written page, zeros to the end.
        var data = Data(count: 9 << 20)
        data.replaceSubrange(0..<(5 << 20), with: Data(repeating: 1, count: 5 << 20))
        data.replaceSubrange((8 << 20)..<((8 << 20) + 512), with: Data(repeating: 2, count: 512))
        let blob = BlobID(container: container, name: "disk.vhd")
        let put = try await served.backend.putPageBlob(blob, data: data, metadata: ["imagepath": "Linux/Ubuntu.json"])
        let sent = await served.recorder.requests.filter { $0.url.path.hasSuffix("/pages/disk.vhd") }
        let create = try #require(sent.first)
        #expect(create.method == "PUT" && create.url.query == nil)
        #expect(create.header("x-ms-blob-type") == "PageBlob" && create.header("x-ms-blob-content-length") == String(9 << 20))
        #expect(create.header("x-ms-blob-content-md5") == put.contentMD5 && (create.body ?? Data()).isEmpty)
        let pages = sent.dropFirst()
        #expect(pages.allSatisfy { $0.url.query == "comp=page" && $0.header("x-ms-page-write") == "update" })
        #expect(pages.map { $0.header("x-ms-range") ?? "" } == ["bytes=0-4194303", "bytes=4194304-5242879", "bytes=8388608-8389119"])
        #expect(pages.reduce(0) { $0 + ($1.body?.count ?? 0) } == (5 << 20) + 512, "only written pages travel")
        #expect(try await served.backend.getBlob(blob) == data)
        let properties = try await served.backend.getBlobProperties(blob)
        #expect(properties.blobType == .pageBlob && properties.contentMD5 == put.contentMD5)
    }
}

