import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// `imagefactory local serve --tls` as a separate process: the Azure backend's stand-in for Azure.
final class ServedCloud {
    let process: Process
    let stateDirectory: URL
    let base: String
    let certificate: String
    let log: URL

    /// Starts the server on a free port over `stateDirectory` and waits until it listens.
    init(stateDirectory: URL, tls: Bool = true, arguments: [String] = [], environment extra: [String: String] = [:]) throws {
        self.stateDirectory = stateDirectory
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let out = scratch.appendingPathComponent("stdout")
        log = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process = Process()
        process.executableURL = try ImageFactory.binary()
        process.arguments = ["local", "serve", "--state-dir", stateDirectory.path, "--port", "0"] + (tls ? ["--tls"] : []) + arguments
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("IMAGEFACTORY_") }
        environment["IMAGEFACTORY_LOCAL_LATENCY"] = "instant"
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Wait for the listening line: the server prints it once bound (bounded: 30 s).
        var found: (String, String)?
        for _ in 0..<600 {
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Listening on ") }) {
                let cert = text.split(separator: "\n").first(where: { $0.contains("TLS certificate: ") })
                if tls && cert == nil { continue }
                found = (String(line.dropFirst("Listening on ".count).split(separator: " ")[0]),
                         cert.map { String($0.components(separatedBy: "TLS certificate: ")[1]) } ?? "")
                break
            }
            guard process.isRunning else { break }
            usleep(50_000)
        }
        guard let found else {
            process.terminate()
            throw ServeFailed(output: (try? String(contentsOf: log, encoding: .utf8)) ?? "")
        }
        (base, certificate) = found
    }

    struct ServeFailed: Error, CustomStringConvertible {
        var output: String
        var description: String { "local serve did not start:\n\(output)" }
    }

    /// The environment that points `imagefactory --backend azure` at this server with a client secret.
    var azureEnvironment: [String: String] {
        var environment = signInEnvironment
        environment["AZURE_CLIENT_SECRET"] = "e2e-secret"
        return environment
    }

    /// Where the backend finds this server, with no sign-in mode chosen yet.
    var signInEnvironment: [String: String] {
        var environment = ["IMAGEFACTORY_BACKEND": "azure", "IMAGEFACTORY_ARM_ENDPOINT": base, "AZURE_AUTHORITY_HOST": base,
                           "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "11111111-0000-4000-8000-00000000000a",
                           "IMAGEFACTORY_IMDS_ENDPOINT": "http://127.0.0.1:9", "IMAGEFACTORY_LOCK_SECONDS": "15", "PATH": "/usr/bin:/bin"]
        if !certificate.isEmpty { environment["IMAGEFACTORY_CA_FILE"] = certificate }
        return environment
    }

    /// An admin call (the server must be plain http: URLSession would refuse the self-signed certificate).
    func admin(_ method: String, _ path: String, json: [String: Any]? = nil) throws -> [String: Any] {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        if let json { request.httpBody = try JSONSerialization.data(withJSONObject: json) }
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, _, _ in
            box.data = data
            done.signal()
        }.resume()
        done.wait()
        return (try? JSONSerialization.jsonObject(with: box.data ?? Data())) as? [String: Any] ?? [:]
    }

    final class ResultBox: @unchecked Sendable {
        // @unchecked: written once by the callback before the semaphore is signalled, read after.
        var data: Data?
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// The whole factory through the Azure backend, against `local serve` with Azure's hostility turned
/// up: its result must equal the same run on the embedded local cloud.
@Suite(.serialized)
struct AzureBackendRunTests {
    struct Inventory: Decodable, Equatable {
        struct Lab: Decodable, Equatable {
            var name: String
            var vms: [Item]
            var customImages: [Item]
        }
        struct Item: Decodable, Equatable {
            var name: String
            var tags: [String: String]
        }
        var labs: [Lab]

        /// What a run leaves: per lab, the images by name and source path, and the VMs by name.
        var summary: [String: [String]] {
            var result: [String: [String]] = [:]
            for lab in labs {
                result[lab.name] = (lab.customImages.map { "image \($0.name) from \($0.tags["ImagePath"] ?? "?")" } + lab.vms.map { "vm \($0.name)" }).sorted()
            }
            return result
        }
    }

    static func inventory(_ arguments: [String]) throws -> Inventory {
        let result = try ImageFactory.run(["local", "show", "--json"] + arguments, environment: ["IMAGEFACTORY_LOCAL_LATENCY": "instant"])
        #expect(result.status == 0, "\(result)")
        return try JSONDecoder().decode(Inventory.self, from: Data(result.stdout.utf8))
    }

    @Test("run --backend azure against local serve with 503s, failed copies, a small write bucket, short tokens and paged lists equals the local run")
    func sampleFactoryOverREST() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let state = repo.url(".served")
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path, "--state-dir", state.path],
                                         environment: ["IMAGEFACTORY_LOCAL_LATENCY": "instant"]).status == 0)
            let served = try ServedCloud(stateDirectory: state, arguments: ["--page-size", "2", "--token-lifetime", "6", "--quiet"],
                                         environment: ["IMAGEFACTORY_LOCAL_FAULTS": "seed=11;*.transient=0.08;copy.copyFailure=0.15", "IMAGEFACTORY_LOCAL_THROTTLE": "30/15"])
            defer { served.stop() }

            let reportFile = repo.url("out/azure-run.json")
            let first = try ImageFactory.run(["run", "--repo", repo.path, "--report-json", reportFile.path], environment: served.azureEnvironment)
            #expect(first.status == 0, "\(first)")
            #expect(first.stdout.contains("38 succeeded, 0 failed"), "\(first.stdout)")
            // The hostility was real: the run retried through injected 503s and throttling.
            let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: reportFile)) as? [String: Any])
            let backend = try #require(report["backend"] as? [String: Any])
            #expect(backend["kind"] as? String == "azure")
            #expect((backend["correlationId"] as? String)?.count == 36)
            #expect((backend["retries"] as? Int ?? 0) > 0, "\(backend)")
            #expect((backend["armWrites"] as? Int ?? 0) > 0 && (backend["storageWrites"] as? Int ?? 0) > 0, "\(backend)")
            let second = try ImageFactory.run(["run", "--repo", repo.path], environment: served.azureEnvironment)
            #expect(second.status == 0, "\(second)")
            #expect(second.stdout.contains("0 actions"), "a second run finds nothing to do: \(second.stdout)")
            for secret in ["e2e-secret", "sig=", "Bearer ey"] {
                #expect(!first.stdout.contains(secret) && !first.stderr.contains(secret), "'\(secret)' leaked into the output")
            }
            served.stop()

            let overREST = try Self.inventory(["--state-dir", state.path])
            let local = try ImageFactory.run(["run", "--repo", repo.path], environment: ["IMAGEFACTORY_LOCAL_LATENCY": "instant", "IMAGEFACTORY_LOCK_SECONDS": "1"])
            #expect(local.status == 0, "\(local)")
            let embedded = try Self.inventory(["--repo", repo.path])
            #expect(!overREST.summary.isEmpty && overREST.summary.values.contains { !$0.isEmpty }, "the run made images")
            #expect(overREST.summary == embedded.summary)
        }
    }

    @Test("each sign-in mode, set up only through its CI's environment variables, plans the sample factory with the binary",
          arguments: ["client-secret", "workload-identity", "github-oidc", "azure-devops-oidc", "managed-identity", "app-service"])
    func signInModes(_ mode: String) throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let state = repo.url(".served")
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path, "--state-dir", state.path],
                                         environment: ["IMAGEFACTORY_LOCAL_LATENCY": "instant"]).status == 0)
            let served = try ServedCloud(stateDirectory: state, tls: false, arguments: ["--quiet"])
            defer { served.stop() }
            var environment = served.signInEnvironment
            switch mode {
            case "client-secret":
                environment["AZURE_CLIENT_SECRET"] = "plan-secret"
            case "workload-identity":
                let token = try #require(try served.admin("POST", "/_imagefactory/federated-tokens", json: ["issuer": "kubernetes", "subject": "system:serviceaccount:factory:nightly"])["token"] as? String)
                let file = repo.url("token")
                try token.write(to: file, atomically: true, encoding: .utf8)
                environment["AZURE_FEDERATED_TOKEN_FILE"] = file.path
            case "github-oidc":
                environment["ACTIONS_ID_TOKEN_REQUEST_URL"] = "\(served.base)/_github/idtoken?api-version=2.0"
                environment["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = try #require(try served.admin("POST", "/_imagefactory/ci-request-tokens")["token"] as? String)
            case "azure-devops-oidc":
                environment["SYSTEM_OIDCREQUESTURI"] = "\(served.base)/_ado/oidctoken"
                environment["SYSTEM_ACCESSTOKEN"] = try #require(try served.admin("POST", "/_imagefactory/ci-request-tokens")["token"] as? String)
                environment["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"] = "5b8a2b3c-0000-4000-8000-000000000002"
            case "managed-identity":
                environment["IMAGEFACTORY_IMDS_ENDPOINT"] = served.base
                environment["AZURE_CLIENT_ID"] = nil
            default:
                environment["IDENTITY_ENDPOINT"] = "\(served.base)/msi/token"
                environment["IDENTITY_HEADER"] = try #require(try served.admin("POST", "/_imagefactory/ci-request-tokens")["token"] as? String)
            }
            let result = try ImageFactory.run(["plan", "--repo", repo.path], environment: environment)
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("38 actions"), "\(result.stdout)")
        }
    }

    @Test("doctor says all is well, then names the missing permission and the role to grant, with exit 3")
    func doctor() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let state = repo.url(".served")
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path, "--state-dir", state.path],
                                         environment: ["IMAGEFACTORY_LOCAL_LATENCY": "instant"]).status == 0)
            do {
                let served = try ServedCloud(stateDirectory: state, arguments: ["--quiet"])
                defer { served.stop() }
                let ok = try ImageFactory.run(["doctor", "--repo", repo.path], environment: served.azureEnvironment)
                #expect(ok.status == 0 && ok.stdout.contains("All is well."), "\(ok)")
                #expect(ok.stdout.contains("Identity: app 11111111-0000-4000-8000-00000000000a"), "\(ok.stdout)")
            }
            let denied = try ServedCloud(stateDirectory: state, arguments: ["--quiet"],
                                         environment: ["IMAGEFACTORY_SERVE_DENY": "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"])
            defer { denied.stop() }
            let result = try ImageFactory.run(["doctor", "--repo", repo.path], environment: denied.azureEnvironment)
            #expect(result.status == 3, "\(result)")
            #expect(result.stdout.contains("missing Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"), "\(result.stdout)")
            #expect(result.stdout.contains("grant 'Storage Blob Data Contributor'"), "\(result.stdout)")
        }
    }

    @Test("with --storage-auth key the whole sample factory runs on Shared Key and service SAS copies, and a rerun has nothing to do")
    func sharedKeyRun() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let state = repo.url(".served")
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path, "--state-dir", state.path],
                                         environment: ["IMAGEFACTORY_LOCAL_LATENCY": "instant"]).status == 0)
            let served = try ServedCloud(stateDirectory: state, arguments: ["--quiet"])
            defer { served.stop() }
            var environment = served.azureEnvironment
            environment["IMAGEFACTORY_STORAGE_AUTH"] = "key"
            let first = try ImageFactory.run(["run", "--repo", repo.path], environment: environment)
            #expect(first.status == 0 && first.stdout.contains("38 succeeded, 0 failed"), "\(first)")
            let second = try ImageFactory.run(["run", "--repo", repo.path], environment: environment)
            #expect(second.status == 0 && second.stdout.contains("0 actions"), "\(second)")
        }
    }

    @Test("with no sign-in configured, --backend azure exits 3 and says what it tried and what to set")
    func noCredentials() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let result = try ImageFactory.run(["plan", "--repo", repo.path, "--backend", "azure", "--auth", "client-secret",
                                               "--arm-endpoint", "http://127.0.0.1:9"], environment: ["IMAGEFACTORY_IMDS_ENDPOINT": "http://127.0.0.1:9"])
            #expect(result.status == 3, "\(result)")
            #expect(result.stderr.contains("AZURE_CLIENT_SECRET"), "\(result.stderr)")
            let auto = try ImageFactory.run(["plan", "--repo", repo.path, "--backend", "azure", "--arm-endpoint", "http://127.0.0.1:9"],
                                            environment: ["IMAGEFACTORY_IMDS_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"])
            #expect(auto.status == 3, "\(auto)")
            #expect(auto.stderr.contains("IMDS") && auto.stderr.contains("AZURE_CLIENT_ID"), "\(auto.stderr)")
        }
    }
}
