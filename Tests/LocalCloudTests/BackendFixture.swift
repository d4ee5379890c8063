import AzureBackend
import FactoryModel
import Foundation
import LocalCloud
import LocalServe
import Testing

// The conformance suite runs against `any CloudBackend`. A backend joins it by adding a
// `BackendUnderTest` to `BackendUnderTest.all`: a name and a closure that makes a fresh backend
// holding two labs (each with its own storage account) and a container in the factory lab.

/// What every conformance test starts from.
struct BackendFixture: Sendable {
    let backend: any CloudBackend
    /// The lab where VMs are built and VHDs kept.
    let factoryLab: Lab
    /// A second lab in another resource group, with its own storage account.
    let targetLab: Lab
    /// An existing container in the factory lab's storage account.
    let container: ContainerID
    let cleanup: @Sendable () async -> Void

    var subscriptionId: String { factoryLab.id.subscriptionId }
}

/// A backend the conformance suite runs against.
struct BackendUnderTest: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable () async throws -> BackendFixture

    var testDescription: String { name }

    /// Every backend the conformance suite covers. The Azure backend will add itself here.
    static let all: [BackendUnderTest] = [.local, .azure]

    static let local = BackendUnderTest(name: "LocalCloud") { try await LocalCloudFixture.make().fixture }

    /// The Azure backend over real HTTPS against `local serve` (self-signed certificate trusted
    /// through the CA file, every ARM list paged two items at a time).
    static let azure = BackendUnderTest(name: "AzureBackend via local serve") { try await AzureServeFixture.make().fixture }

    /// Runs `body` on a fresh fixture and cleans up whether it passed or not.
    func with(_ body: (BackendFixture) async throws -> Void) async throws {
        let fixture = try await make()
        do {
            try await body(fixture)
        } catch {
            await fixture.cleanup()
            throw error
        }
        await fixture.cleanup()
    }
}

/// A local cloud in a fresh temporary state directory.
struct LocalCloudFixture: Sendable {
    let cloud: LocalCloud
    let directory: URL
    let fixture: BackendFixture

    static let subscription = "11111111-2222-4333-8444-555555555555"
    static let factoryLabID = LabID(subscriptionId: subscription, resourceGroup: "rg-factory", name: "FactoryLab")
    static let targetLabID = LabID(subscriptionId: subscription, resourceGroup: "rg-target", name: "TargetLab")

    /// The conformance settings: no latency, no throttling, no faults.
    static var instant: LocalCloudSettings {
        LocalCloudSettings(latency: .instant, throttle: .off, faults: .none)
    }

    static func make(settings: LocalCloudSettings = instant) async throws -> LocalCloudFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("localcloud-tests-\(UUID().uuidString)")
        // The emulated time is moved by the tests (`elapse`), never waited for.
        let cloud = try LocalCloud(stateDirectory: directory, settings: settings, clock: ManualClock(now: Date()))
        let factory = try await cloud.createLab(factoryLabID, location: "westeurope")
        let target = try await cloud.createLab(targetLabID, location: "northeurope")
        let container = ContainerID(account: factory.storageAccount, name: "imagefactoryvhds")
        try await cloud.createContainer(container)
        let fixture = BackendFixture(backend: cloud, factoryLab: factory, targetLab: target, container: container) {
            try? FileManager.default.removeItem(at: directory)
        }
        return LocalCloudFixture(cloud: cloud, directory: directory, fixture: fixture)
    }

    static func with(settings: LocalCloudSettings = instant, _ body: (LocalCloudFixture) async throws -> Void) async throws {
        let local = try await make(settings: settings)
        do {
            try await body(local)
        } catch {
            await local.fixture.cleanup()
            throw error
        }
        await local.fixture.cleanup()
    }
}

// MARK: - Requests

enum Requests {
    /// A golden-image template with one DevTest Labs VM resource.
    static func template(os: OSType) -> Data {
        let image = os == .windows
            ? #"{"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter", "version": "latest", "osType": "Windows"}"#
            : #"{"publisher": "Canonical", "offer": "UbuntuServer", "sku": "22_04-lts", "version": "latest", "osType": "Linux"}"#
        return Data("""
            {
              "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
              "contentVersion": "1.0.0.0",
              "parameters": {"newVMName": {"type": "string"}, "labName": {"type": "string"}},
              "resources": [{
                "type": "Microsoft.DevTestLab/labs/virtualmachines",
                "apiVersion": "2018-09-15",
                "name": "[concat(parameters('labName'), '/', parameters('newVMName'))]",
                "properties": {"size": "Standard_DS2_v2", "galleryImageReference": \(image)}
              }]
            }
            """.utf8)
    }

    static func vm(_ id: VirtualMachineID, os: OSType = .linux, artifacts: [String] = [], tags: [String: String] = [:],
                   deploymentName: String? = nil) -> VMDeploymentRequest {
        VMDeploymentRequest(
            vm: id, template: template(os: os), parameters: ["newVMName": id.name, "labName": id.lab.name],
            artifacts: artifacts.map { ArtifactReference(artifactId: "/artifactsources/public repo/artifacts/\($0)", name: $0) },
            tags: tags, deploymentName: deploymentName ?? "deploy-\(id.name)")
    }

    /// A VM whose last artifact generalizes it: it shuts down, is deallocated and can be captured.
    static func generalizedVM(_ id: VirtualMachineID, os: OSType = .windows, tags: [String: String] = [:]) -> VMDeploymentRequest {
        vm(id, os: os, artifacts: ["\(os == .windows ? "windows" : "linux")-common-tools", os.generalizeArtifact], tags: tags)
    }

    /// The bytes of a small fixed VHD (1 MiB), as a person would upload for a custom image.
    static func smallVHD(_ label: String, os: OSType = .windows) throws -> Data {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("small-\(UUID().uuidString).vhd")
        defer { try? FileManager.default.removeItem(at: url) }
        try VirtualDisk.write(VirtualDisk.Content(osType: os, baseImage: label, artifacts: [], generalized: true, virtualSize: 1 << 20), to: url)
        return try Data(contentsOf: url)
    }

    static func image(_ id: CustomImageID, vhd: BlobID, tags: [String: String] = [:]) -> CustomImageRequest {
        CustomImageRequest(id: id, vhd: vhd, osType: .windows, sysprep: true, description: "conformance", author: "tests", tags: tags)
    }
}

// MARK: - Waiting and errors

/// Lets `seconds` of the backend's time pass: the local cloud's manual clock moves; no test sleeps.
func elapse(_ seconds: Double, on backend: any CloudBackend) {
    if let azure = backend as? AzureBackend, let clock = AzureServeFixture.clocks.clock(for: azure) {
        clock.advance(by: max(seconds, 0.001))
        return
    }
    guard let cloud = backend as? LocalCloud, let clock = cloud.clock as? ManualClock else {
        Issue.record("The backend under test has no manual clock to move; give it one rather than sleeping.")
        return
    }
    clock.advance(by: max(seconds, 0.001))
}

/// Polls a long-running operation to its end, as the factory's client does (Retry-After between polls).
func finish(_ handle: OperationHandle, on backend: any CloudBackend, timeout: Double = 600) async throws -> OperationStatus {
    var waited = 0.0
    var delay = handle.retryAfter
    while waited <= timeout {
        if delay > 0 { elapse(min(delay, 2), on: backend); waited += min(delay, 2) }
        let status = try await backend.pollOperation(handle)
        guard case .inProgress(let retryAfter) = status else { return status }
        delay = max(retryAfter, 0.001)
    }
    throw CloudError(status: 408, code: "TestTimeout", message: "Operation \(handle.id ?? "completed") did not finish within \(timeout) s.")
}

/// Polls a long-running operation and requires it to succeed.
func succeed(_ handle: OperationHandle, on backend: any CloudBackend, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let status = try await finish(handle, on: backend)
    #expect(status == .succeeded, "operation \(handle.id ?? "completed") ended \(status)", sourceLocation: sourceLocation)
}

/// Polls a blob until its copy is no longer pending.
func finishedCopy(_ blob: BlobID, on backend: any CloudBackend, timeout: Double = 600) async throws -> BlobProperties {
    var waited = 0.0
    while true {
        let properties = try await backend.getBlobProperties(blob)
        guard properties.copyStatus == .pending else { return properties }
        guard waited < timeout else { throw CloudError(status: 408, code: "TestTimeout", message: "The copy to \(blob) is still pending.") }
        let step = min(properties.retryAfter ?? 0.05, 2)
        elapse(step, on: backend)
        waited += step
    }
}

/// Polls a VM until `done` holds for it.
func waitForVM(_ id: VirtualMachineID, on backend: any CloudBackend, timeout: Double = 600,
               until done: (LabVirtualMachine) -> Bool) async throws -> LabVirtualMachine {
    var waited = 0.0
    while true {
        let vm = try await backend.getVirtualMachine(id)
        if done(vm) { return vm }
        guard waited < timeout else { throw CloudError(status: 408, code: "TestTimeout", message: "VM \(id) never reached the expected state: \(vm).") }
        let step = min(vm.retryAfter ?? 0.05, 2)
        elapse(step, on: backend)
        waited += step
    }
}

/// Deleting what is not there: the local cloud says 404; ARM answers 204 (a DELETE is idempotent).
/// Either is fine; what it may not do is start an operation that then fails.
func expectGone<T>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T) async {
    do {
        _ = try await body()
    } catch let error as CloudError {
        #expect(error.status == 404, "Expected 404 or success, got \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("Expected 404 or success, got \(error)", sourceLocation: sourceLocation)
    }
}

/// Runs `body` and requires it to fail with this HTTP status and ARM / storage error code.
@discardableResult
func expectCloudError<T>(_ status: Int, _ code: String, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () async throws -> T) async -> CloudError? {
    do {
        let value = try await body()
        Issue.record("Expected \(status) \(code), but the call succeeded with \(value).", sourceLocation: sourceLocation)
        return nil
    } catch let error as CloudError {
        #expect(error.status == status && error.code == code, "Expected \(status) \(code), got \(error.status) \(error)",
                sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("Expected a CloudError \(status) \(code), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: - Files

enum Files {
    /// Every regular file directly in a folder.
    static func names(in directory: URL) throws -> Set<String> {
        Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
    }

    /// The path of an executable on PATH, or nil.
    static func executable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs a program and returns its exit status and standard output (standard error appended).
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

// MARK: - The Azure backend against local serve

/// A local cloud served over HTTPS on a free loopback port, and an Azure backend signed in to it
/// with a client secret. The emulated services' time is a manual clock the tests move; the
/// backend's own clock (retries, token expiry) is the system's.
struct AzureServeFixture: Sendable {
    let fixture: BackendFixture
    let server: Task<Void, Error>

    /// Which manual clock drives the local cloud behind each Azure backend (a lock-box).
    final class Clocks: @unchecked Sendable {
        // @unchecked: `map` is only touched under `lock`.
        private let lock = NSLock()
        private var map: [ObjectIdentifier: ManualClock] = [:]
        func register(_ backend: AzureBackend, _ clock: ManualClock) { lock.lock(); map[ObjectIdentifier(backend)] = clock; lock.unlock() }
        func clock(for backend: AzureBackend) -> ManualClock? { lock.lock(); defer { lock.unlock() }; return map[ObjectIdentifier(backend)] }
    }
    static let clocks = Clocks()

    static func make() async throws -> AzureServeFixture {
        let local = try await LocalCloudFixture.make()
        let directory = local.directory
        let tenant = "00000000-0000-0000-0000-000000000001"
        let tokens = TokenAuthority(key: try TokenAuthority.signingKey(stateDirectory: directory), settings: .init())
        let service = LocalServeService(cloud: local.cloud, settings: LocalServeSettings(pageSize: 2, throttle: .off, tenant: tenant, blobPageSize: 2), tokens: tokens)
        let tls = try SelfSignedCertificate.ensure(in: directory)
        let server = LocalServer(service: service, port: 0, tls: .init(certificatePath: tls.certificatePath, privateKeyPath: tls.privateKeyPath))
        let ports = AsyncStream<Int>.makeStream()
        let task = Task { try await server.run(onListening: { ports.continuation.yield($0) }) }
        var iterator = ports.stream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CloudError(status: 500, code: "ServeFailed", message: "local serve did not start") }
        let base = "https://127.0.0.1:\(port)"
        let environment = ["AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": "11111111-0000-4000-8000-000000000001", "AZURE_CLIENT_SECRET": "conformance",
                           "IMAGEFACTORY_ARM_ENDPOINT": base, "AZURE_AUTHORITY_HOST": base]
        let profile = try AzureCloudProfile.resolve(cloud: nil, armEndpoint: nil, environment: environment)
        let transport = try AsyncHTTPTransport.shared(caFile: tls.certificatePath)
        let credential = try CredentialFactory.make(mode: .clientSecret, profile: profile, environment: environment, transport: transport, clock: SystemClock())
        let http = AzureHTTPClient(profile: profile, transport: transport, credential: credential, clock: SystemClock(), maxConcurrentWrites: 20,
                                   policy: .init(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.05, requestTimeout: 60))
        let backend = AzureBackend(http: http)
        guard let clock = local.cloud.clock as? ManualClock else { throw CloudError(status: 500, code: "NoClock", message: "the fixture's cloud has no manual clock") }
        clocks.register(backend, clock)
        let fixture = BackendFixture(backend: backend, factoryLab: local.fixture.factoryLab, targetLab: local.fixture.targetLab,
                                     container: local.fixture.container) {
            task.cancel()
            try? FileManager.default.removeItem(at: directory)
        }
        return AzureServeFixture(fixture: fixture, server: task)
    }
}
