import Foundation
import Testing

/// `imagefactory local serve --tls` as a separate process: the Azure backend's stand-in for Azure.
final class ServedCloud {
    let process: Process
    let stateDirectory: URL
    let base: String
    let certificate: String
    let log: URL

    /// Starts the server on a free port over `stateDirectory` and waits until it listens.
    init(stateDirectory: URL, arguments: [String] = [], environment extra: [String: String] = [:]) throws {
        self.stateDirectory = stateDirectory
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let out = scratch.appendingPathComponent("stdout")
        log = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process = Process()
        process.executableURL = try ImageFactory.binary()
        process.arguments = ["local", "serve", "--state-dir", stateDirectory.path, "--port", "0", "--tls"] + arguments
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
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Listening on ") }),
               let cert = text.split(separator: "\n").first(where: { $0.contains("TLS certificate: ") }) {
                found = (String(line.dropFirst("Listening on ".count).split(separator: " ")[0]),
                         String(cert.components(separatedBy: "TLS certificate: ")[1]))
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
        ["IMAGEFACTORY_BACKEND": "azure", "IMAGEFACTORY_ARM_ENDPOINT": base, "AZURE_AUTHORITY_HOST": base, "IMAGEFACTORY_CA_FILE": certificate,
         "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "11111111-0000-4000-8000-00000000000a",
         "AZURE_CLIENT_SECRET": "e2e-secret", "IMAGEFACTORY_IMDS_ENDPOINT": "http://127.0.0.1:9", "IMAGEFACTORY_LOCK_SECONDS": "15"]
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

    @Test("run --backend azure against local serve with 503s, a small write bucket, short tokens and paged lists equals the local run")
    func sampleFactoryOverREST() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let state = repo.url(".served")
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path, "--state-dir", state.path],
                                         environment: ["IMAGEFACTORY_LOCAL_LATENCY": "instant"]).status == 0)
            let served = try ServedCloud(stateDirectory: state, arguments: ["--page-size", "2", "--token-lifetime", "6", "--quiet"],
                                         environment: ["IMAGEFACTORY_LOCAL_FAULTS": "seed=11;*.transient=0.08", "IMAGEFACTORY_LOCAL_THROTTLE": "30/15"])
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
