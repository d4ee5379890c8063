// imagefactory-bench: benchmarks that print figures (never timed unit tests).
//
//   imagefactory-bench validate-config [--templates 10000] [--folders 200] [--labs 2000]
//                                      [--dir PATH] [--iterations 5] [--generate-only]
//
// Arguments are parsed by hand: this target must not depend on ArgumentParser.
import FactoryGit
import FactoryModel
import Foundation

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Command line

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

let usage = """
    usage: imagefactory-bench validate-config [--templates N] [--folders N] [--labs N] [--dir PATH]
                                              [--iterations N] [--generate-only]

      --templates N    golden image templates to generate (default 10000)
      --folders N      folders holding them under Configuration/GoldenImages (default 200)
      --labs N         labs in Labs.json (default 2000)
      --dir PATH       where the generated git repository lives (reused when already generated;
                       default /tmp/imagefactory-bench/validate-t<templates>-f<folders>-l<labs>)
      --iterations N   in-process validate runs to time (default 5)
      --generate-only  generate (or reuse) the repository, print its path and stop
    """

struct ValidateOptions {
    var templates = 10_000
    var folders = 200
    var labs = 2_000
    var dir: String?
    var iterations = 5
    var generateOnly = false

    var repositoryPath: String {
        dir ?? "/tmp/imagefactory-bench/validate-t\(templates)-f\(folders)-l\(labs)"
    }

    static func parse(_ arguments: ArraySlice<String>) throws -> ValidateOptions {
        var options = ValidateOptions()
        var rest = arguments
        func value(_ flag: String) throws -> String {
            guard let v = rest.popFirst() else { throw BenchError("\(flag) needs a value") }
            return v
        }
        func count(_ flag: String, min: Int) throws -> Int {
            let text = try value(flag)
            guard let n = Int(text), n >= min else { throw BenchError("\(flag) needs an integer >= \(min), not \"\(text)\"") }
            return n
        }
        while let argument = rest.popFirst() {
            // Accept --flag=value as well as --flag value.
            if let eq = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                rest.insert(String(argument[argument.index(after: eq)...]), at: rest.startIndex)
                try options.apply(String(argument[..<eq]), value: value, count: count)
            } else {
                try options.apply(argument, value: value, count: count)
            }
        }
        guard options.folders <= options.templates else { throw BenchError("--folders cannot exceed --templates") }
        return options
    }

    private mutating func apply(_ flag: String, value: (String) throws -> String, count: (String, Int) throws -> Int) throws {
        switch flag {
        case "--templates": templates = try count(flag, 1)
        case "--folders": folders = try count(flag, 1)
        case "--labs": labs = try count(flag, 1)
        case "--dir": dir = try value(flag)
        case "--iterations": iterations = try count(flag, 1)
        case "--generate-only": generateOnly = true
        case "-h", "--help":
            print(usage)
            exit(0)
        default: throw BenchError("unknown option \(flag)")
        }
    }
}

// MARK: - Measurement helpers

enum Clock {
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    static func ms(since start: UInt64) -> Double { Double(now() - start) / 1_000_000 }
}

/// A field of /proc/self/status in kB (VmHWM is the peak resident set size), or nil off Linux.
func procStatusKB(_ field: String) -> Int? {
    // /proc files report size 0, so read them with plain read(2) until EOF.
    let fd = open("/proc/self/status", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += buffer[0..<n]
    }
    let text = String(decoding: bytes, as: UTF8.self)
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        return Int(line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
    }
    return nil
}

func formatMB(_ kb: Int?) -> String {
    guard let kb else { return "n/a" }
    return String(format: "%.1f MB", Double(kb) / 1024)
}

/// User plus system CPU time of this process so far, in ms: steadier than wall time on a busy machine.
func cpuMs() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    let user = Double(usage.ru_utime.tv_sec) * 1000 + Double(usage.ru_utime.tv_usec) / 1000
    let system = Double(usage.ru_stime.tv_sec) * 1000 + Double(usage.ru_stime.tv_usec) / 1000
    return user + system
}

func fmt(_ ms: Double) -> String { String(format: "%8.1f ms", ms) }

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

// MARK: - Deterministic generation

struct Gallery {
    var publisher, offer, sku, os: String
}

/// Builds a configuration that looks like a large real factory: Windows and Linux families,
/// team and department folders with spaces, ARM templates with artifacts and parameters.
struct FactoryGenerator {
    static let version = "2"  // bump when the generated content changes, so old repositories are regenerated

    let options: ValidateOptions

    static let windowsFamilies = ["Server 2016", "Server 2019", "Server 2022", "Developer", "Client 10", "Client 11", "Build Agents"]
    static let linuxFamilies = ["Ubuntu 20.04", "Ubuntu 22.04 LTS", "RHEL 9", "Data Science", "Debian 12"]

    static let windowsProducts = [
        "Datacenter", "Datacenter with IIS", "Core", "SQL Server 2019 Developer", "SQL Server 2022 Standard",
        "VS2022 Enterprise", "VS2022 Professional", "VS2019 Community", "Office 365 Desktop", "Build Agent",
        "Web Front End", "Domain Member", "File Server", "Power BI Desktop", "Teams Client", "Jump Host",
        "Docker Host", "Dotnet SDK 8", "Java 21 Workstation", "Node 20 Workstation",
    ]
    static let linuxProducts = [
        "Base", "Docker Host", "Kubernetes Node", "Jupyter", "Conda GPU", "Build Agent", "Postgres 16",
        "Nginx Edge", "Java 21 Runtime", "Python 3.12", "Go Toolchain", "Rust Toolchain", "Ansible Control",
        "Terraform Runner", "Spark Worker",
    ]
    static let windowsGalleries = [
        Gallery(publisher: "MicrosoftWindowsServer", offer: "WindowsServer", sku: "2019-Datacenter", os: "Windows"),
        Gallery(publisher: "MicrosoftWindowsServer", offer: "WindowsServer", sku: "2022-datacenter-azure-edition", os: "Windows"),
        Gallery(publisher: "MicrosoftWindowsServer", offer: "WindowsServer", sku: "2016-Datacenter", os: "Windows"),
        Gallery(publisher: "MicrosoftVisualStudio", offer: "visualstudio2022", sku: "vs-2022-ent-latest-win11-n-gen2", os: "Windows"),
        Gallery(publisher: "MicrosoftSQLServer", offer: "sql2019-ws2019", sku: "sqldev", os: "Windows"),
        Gallery(publisher: "MicrosoftWindowsDesktop", offer: "windows-11", sku: "win11-23h2-ent", os: "Windows"),
    ]
    static let linuxGalleries = [
        Gallery(publisher: "Canonical", offer: "0001-com-ubuntu-server-jammy", sku: "22_04-lts-gen2", os: "Linux"),
        Gallery(publisher: "Canonical", offer: "0001-com-ubuntu-server-focal", sku: "20_04-lts-gen2", os: "Linux"),
        Gallery(publisher: "RedHat", offer: "RHEL", sku: "9-lvm-gen2", os: "Linux"),
        Gallery(publisher: "microsoft-dsvm", offer: "ubuntu-2004", sku: "2004-gen2", os: "Linux"),
        Gallery(publisher: "Debian", offer: "debian-12", sku: "12-gen2", os: "Linux"),
    ]
    static let windowsArtifacts: [(String, [(String, String)])] = [
        ("windows-git", []), ("windows-vscode", []), ("windows-docker-desktop", []), ("windows-chrome", []),
        ("windows-7zip", []), ("windows-notepadplusplus", []),
        ("windows-chocolatey", [("packages", "googlechrome,firefox,putty")]),
        ("windows-run-powershell", [("scriptFileUris", "[\"https://example.blob.core.windows.net/scripts/setup.ps1\"]"),
                                    ("scriptToRun", "setup.ps1"), ("scriptArguments", "-Mode Factory")]),
        ("windows-install-windows-updates", []),
        ("windows-domain-join", [("domainName", "corp.contoso.com"), ("ouPath", "OU=Labs,DC=corp,DC=contoso,DC=com")]),
    ]
    static let linuxArtifacts: [(String, [(String, String)])] = [
        ("linux-apt-package", [("packages", "htop jq git")]), ("linux-run-shell", [("command", "sudo apt-get -y upgrade")]),
        ("linux-docker", []), ("linux-install-azure-cli", []), ("linux-yum-package", [("packages", "tmux vim")]),
        ("linux-run-shell", [("command", "curl -fsSL https://example.com/bootstrap.sh | bash")]),
    ]

    struct Folder {
        var path: String      // relative to GoldenImages/
        var windows: Bool
        var family: String    // "Windows/Server 2019"
    }

    /// Leaf folders: OS / family / team (or a deeper department / pool nesting), with spaces.
    var folders: [Folder] {
        (0..<options.folders).map { i in
            let windows = i % 5 < 3
            let families = windows ? Self.windowsFamilies : Self.linuxFamilies
            let family = (windows ? "Windows/" : "Linux/") + families[(i / 5) % families.count]
            let leaf = i % 3 == 0
                ? "Dept \(String(format: "%02d", i / 30))/Pool \(String(format: "%03d", i))"
                : "Team \(String(format: "%03d", i))"
            return Folder(path: "\(family)/\(leaf)", windows: windows, family: family)
        }
    }

    /// Template paths, relative to GoldenImages/, in generation order (template t lives in folder t % folders).
    func templatePaths(_ folders: [Folder]) -> [String] {
        (0..<options.templates).map { t in
            let folder = folders[t % folders.count]
            let k = t / folders.count
            let products = folder.windows ? Self.windowsProducts : Self.linuxProducts
            let product = products[(t &* 7 &+ t / folders.count) % products.count]
            return "\(folder.path)/\(product) \(k + 1).json"
        }
    }

    func template(index t: Int, path: String, windows: Bool) -> String {
        var rng = SplitMix64(seed: UInt64(t) &* 2_654_435_761 &+ 17)
        let gallery = (windows ? Self.windowsGalleries : Self.linuxGalleries).randomElement(using: &rng)!
        let pool = windows ? Self.windowsArtifacts : Self.linuxArtifacts
        let artifactCount = Int.random(in: 1...4, using: &rng)
        var artifacts: [String] = []
        for _ in 0..<artifactCount {
            let (name, params) = pool.randomElement(using: &rng)!
            var entry = """
                      {
                        "artifactId": "[resourceId('Microsoft.DevTestLab/labs/artifactSources/artifacts', parameters('labName'), 'public repo', '\(name)')]"
                """
            if !params.isEmpty {
                let rendered = params.map { p in
                    """
                                  {
                                    "name": "\(p.0)",
                                    "value": "\(p.1.replacingOccurrences(of: "\"", with: "\\\""))"
                                  }
                    """
                }
                entry += ",\n            \"parameters\": [\n" + rendered.joined(separator: ",\n") + "\n            ]"
            }
            entry += "\n          }"
            artifacts.append(entry)
        }
        let name = (path.split(separator: "/").last.map(String.init) ?? path).replacingOccurrences(of: ".json", with: "")
        let roll = Int.random(in: 0..<100, using: &rng)
        var metadata = ""
        if roll < 5 {
            metadata = "\n  \"metadata\": {\n    \"imageFactory\": {\n      \"osState\": \"specialized\"\n    }\n  },"
        } else if roll < 7 {
            // A few templates pin their VM name; these are unique by construction.
            metadata = "\n  \"metadata\": {\n    \"imageFactory\": {\n      \"vmName\": \"pin\(String(format: "%05d", t))\"\n    }\n  },"
        }
        let size = roll % 4 == 0 ? "Standard_D4s_v5" : "[parameters('size')]"
        return """
            {
              "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
              "contentVersion": "1.0.0.0",\(metadata)
              "parameters": {
                "newVMName": {
                  "type": "string"
                },
                "labName": {
                  "type": "string"
                },
                "size": {
                  "type": "string"
                },
                "userName": {
                  "type": "string"
                },
                "password": {
                  "type": "securestring"
                }
              },
              "variables": {
                "labSubnetName": "[concat(variables('labVirtualNetworkName'), 'Subnet')]",
                "labVirtualNetworkId": "[resourceId('Microsoft.DevTestLab/labs/virtualnetworks', parameters('labName'), variables('labVirtualNetworkName'))]",
                "labVirtualNetworkName": "[concat('Dtl', parameters('labName'))]",
                "vmId": "[resourceId ('Microsoft.DevTestLab/labs/virtualmachines', parameters('labName'), parameters('newVMName'))]",
                "vmName": "[concat(parameters('labName'), '/', parameters('newVMName'))]"
              },
              "resources": [
                {
                  "apiVersion": "2018-10-15-preview",
                  "type": "Microsoft.DevTestLab/labs/virtualmachines",
                  "name": "[variables('vmName')]",
                  "location": "[resourceGroup().location]",
                  "properties": {
                    "labVirtualNetworkId": "[variables('labVirtualNetworkId')]",
                    "notes": "\(name) (\(gallery.offer) \(gallery.sku)), golden image #\(t)",
                    "galleryImageReference": {
                      "offer": "\(gallery.offer)",
                      "publisher": "\(gallery.publisher)",
                      "sku": "\(gallery.sku)",
                      "osType": "\(gallery.os)",
                      "version": "latest"
                    },
                    "size": "\(size)",
                    "userName": "[parameters('userName')]",
                    "password": "[parameters('password')]",
                    "isAuthenticationWithSshKey": false,
                    "artifacts": [
            \(artifacts.joined(separator: ",\n"))
                    ],
                    "labSubnetName": "[variables('labSubnetName')]",
                    "disallowPublicIpAddress": true,
                    "storageType": "Standard",
                    "allowClaim": false
                  }
                }
              ],
              "outputs": {
                "labVMId": {
                  "type": "string",
                  "value": "[variables('vmId')]"
                }
              }
            }

            """
    }

    /// Labs.json: every lab takes one to three team folders and a few single templates; some take a
    /// whole family and a handful a whole OS. Some paths use `\` or a trailing `/`, as people write them.
    func labsJSON(folders: [Folder], templates: [String]) -> (String, deliveries: Int) {
        var rng = SplitMix64(seed: 0xF00D)
        let subscriptions: [String] = (0..<50).map { (s: Int) -> String in
            let a: Int = 0x1000_0000 + s * 7919
            let d: Int = (s * 13) % 4096
            let e: Int = s * 104_729
            return String(format: "%08x-%04x-4%03x-8%03x-%012x", a, s, s % 4096, d, e)
        }
        let families = Array(Set(folders.map(\.family))).sorted()
        let regions = ["westeurope", "northeurope", "eastus", "westus2", "uksouth", "swedencentral"]
        var entries: [String] = []
        var deliveries = 0
        for i in 0..<options.labs {
            var paths: [String] = []
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                paths.append(folders.randomElement(using: &rng)!.path)
            }
            for _ in 0..<Int.random(in: 1...5, using: &rng) {
                paths.append(templates.randomElement(using: &rng)!)
            }
            let roll = Int.random(in: 0..<1000, using: &rng)
            if roll < 30 { paths.append(families.randomElement(using: &rng)!) }
            if roll >= 995 { paths.append(Bool.random(using: &rng) ? "Windows" : "Linux") }
            paths = paths.map { p in
                switch Int.random(in: 0..<20, using: &rng) {
                case 0: return p.replacingOccurrences(of: "/", with: "\\")
                case 1 where !p.hasSuffix(".json"): return p + "/"
                default: return p
                }
            }
            deliveries += paths.count
            let list = paths.map { "        \"\(jsonEscape($0))\"" }.joined(separator: ",\n")
            entries.append("""
                    {
                      "SubscriptionId": "\(subscriptions[i % subscriptions.count])",
                      "ResourceGroup": "rg-lab-\(String(format: "%04d", i))",
                      "LabName": "Lab \(String(format: "%04d", i)) \(i % 2 == 0 ? "Developers" : "Training")",
                      "Location": "\(regions[i % regions.count])",
                      "ImagePaths": [
                \(list)
                      ]
                    }
                """)
        }
        return ("{\n  \"Labs\": [\n" + entries.joined(separator: ",\n") + "\n  ]\n}\n", deliveries)
    }

    func jsonEscape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }

    static let settingsJSON = """
        {
          "$comment": "Generated by imagefactory-bench validate-config.",
          "subscriptionId": "00000000-0000-4000-8000-000000000000",
          "resourceGroup": "rg-imagefactory-weu",
          "factoryLab": "ImageFactory",
          "location": "westeurope",
          "maxConcurrentJobs": 20,
          "imagesToSave": 2,
          "vmSize": "Standard_DS2_v2",
          "timeoutMinutes": 60,
          "defaultOsState": "generalized",
          "maxDeletions": 50
        }

        """

    var markerContent: String {
        "generator \(Self.version) templates \(options.templates) folders \(options.folders) labs \(options.labs)\n"
    }

    /// Generates the repository unless a complete one made with the same options is already there.
    func ensureRepository() throws -> (path: String, reused: Bool) {
        let root = URL(fileURLWithPath: options.repositoryPath).standardizedFileURL
        let marker = root.appendingPathComponent(".git/imagefactory-bench-validate")
        let fm = FileManager.default
        if let existing = try? String(contentsOf: marker, encoding: .utf8), existing == markerContent {
            return (root.path, true)
        }
        if fm.fileExists(atPath: root.path) {
            // Only ever delete what this tool made (or an empty folder).
            let contents = (try? fm.contentsOfDirectory(atPath: root.path)) ?? []
            guard contents.isEmpty || fm.fileExists(atPath: marker.path) else {
                throw BenchError("\(root.path) exists and was not generated by imagefactory-bench; pass another --dir")
            }
            try fm.removeItem(at: root)
        }
        let started = Clock.now()
        let configuration = root.appendingPathComponent("Configuration")
        let golden = configuration.appendingPathComponent("GoldenImages")
        try fm.createDirectory(at: golden, withIntermediateDirectories: true)
        let folders = self.folders
        for folder in folders {
            try fm.createDirectory(at: golden.appendingPathComponent(folder.path), withIntermediateDirectories: true)
        }
        let paths = templatePaths(folders)
        var bytes = 0
        for (t, path) in paths.enumerated() {
            let text = template(index: t, path: path, windows: folders[t % folders.count].windows)
            bytes += text.utf8.count
            try Data(text.utf8).write(to: golden.appendingPathComponent(path))
        }
        let (labs, deliveries) = labsJSON(folders: folders, templates: paths)
        try Data(labs.utf8).write(to: configuration.appendingPathComponent("Labs.json"))
        try Data(Self.settingsJSON.utf8).write(to: configuration.appendingPathComponent("FactorySettings.json"))
        try Data("# Generated by imagefactory-bench validate-config\n".utf8).write(to: root.appendingPathComponent("README.md"))
        print(String(format: "generated %d templates (avg %.1f KB) in %d folders, Labs.json %.1f KB with %d labs / %d ImagePaths in %.1f s",
                     paths.count, Double(bytes) / Double(paths.count) / 1024, folders.count, Double(labs.utf8.count) / 1024,
                     options.labs, deliveries, Double(Clock.now() - started) / 1e9))
        let gitStarted = Clock.now()
        try git(["init", "-q", "-b", "main"], in: root)
        try git(["add", "-A"], in: root)
        try git(["-c", "user.name=ImageFactory Bench", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false",
                 "commit", "-q", "--no-verify", "-m", "Generated factory configuration"], in: root)
        print(String(format: "git add + commit in %.1f s", Double(Clock.now() - gitStarted) / 1e9))
        try markerContent.write(to: marker, atomically: true, encoding: .utf8)
        return (root.path, false)
    }

    private func git(_ arguments: [String], in directory: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git"] + arguments
        process.currentDirectoryURL = directory
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_CONFIG_NOSYSTEM"] = "1"
        environment["GIT_TERMINAL_PROMPT"] = "0"
        process.environment = environment
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError("git \(arguments.joined(separator: " ")) failed with status \(process.terminationStatus)")
        }
    }
}

// MARK: - validate-config

func validateConfig(_ options: ValidateOptions) throws {
    let generator = FactoryGenerator(options: options)
    let (repository, reused) = try generator.ensureRepository()
    print("repo: \(repository)\(reused ? " (reused)" : "")")
    if options.generateOnly { return }

    print("rss before: \(formatMB(procStatusKB("VmRSS"))), peak so far: \(formatMB(procStatusKB("VmHWM")))")
    print("run   git read   parse+validate     total    (cpu)   (files, templates, labs, deliveries, errors, warnings)")
    var gitTimes: [Double] = []
    var parseTimes: [Double] = []
    var totals: [Double] = []
    var cpuTimes: [Double] = []
    var last: FactoryConfiguration?
    for run in 1...options.iterations {
        last = nil  // let the previous result go before measuring again
        let cpu0 = cpuMs()
        let t0 = Clock.now()
        let snapshot = try GitConfigSource(repositoryPath: repository).load()
        let gitMs = Clock.ms(since: t0)
        let t1 = Clock.now()
        let configuration = ConfigurationLoader.load(snapshot)
        let parseMs = Clock.ms(since: t1)
        let total = Clock.ms(since: t0)
        let cpu = cpuMs() - cpu0
        cpuTimes.append(cpu)
        gitTimes.append(gitMs)
        parseTimes.append(parseMs)
        totals.append(total)
        let deliveries = configuration.labs.reduce(0) { $0 + $1.images.count }
        print("\(String(format: "%3d", run)) \(fmt(gitMs))    \(fmt(parseMs))   \(fmt(total))  \(fmt(cpu))   (\(snapshot.files.count), \(configuration.templates.count), \(configuration.labs.count), \(deliveries), \(configuration.diagnostics.errors.count), \(configuration.diagnostics.warnings.count))")
        last = configuration
    }
    let peakValidate = procStatusKB("VmHWM")
    print("git read:        best \(fmt(gitTimes.min()!))  median \(fmt(median(gitTimes)))")
    print("parse+validate:  best \(fmt(parseTimes.min()!))  median \(fmt(median(parseTimes)))")
    print("total:           best \(fmt(totals.min()!))  median \(fmt(median(totals)))")
    print("cpu (user+sys):  best \(fmt(cpuTimes.min()!))  median \(fmt(median(cpuTimes)))")
    print("peak RSS (VmHWM) after validate runs: \(formatMB(peakValidate))")

    if let configuration = last {
        if configuration.diagnostics.hasErrors {
            print("note: the generated configuration has errors (the first few):")
            for d in configuration.diagnostics.errors.prefix(5) { print("  \(d.location ?? "-"): \(d.message)") }
        }
        // What `validate --json` adds on top: the report document, encoded as the CLI does.
        let t = Clock.now()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(ConfigurationReport(configuration))
        print(String(format: "report (validate --json) encode: %.1f ms, %.1f MB; peak RSS (VmHWM) now %@",
                     Clock.ms(since: t), Double(data.count) / 1_048_576, formatMB(procStatusKB("VmHWM"))))
    }
}

// MARK: - Entry point

let arguments = CommandLine.arguments.dropFirst()
do {
    switch arguments.first {
    case "validate-config":
        try validateConfig(ValidateOptions.parse(arguments.dropFirst()))
    case "copy":
        try await CopyBenchmark.run(arguments: Array(arguments.dropFirst()))
    case "plan":
        try PipelineBenchmarks.plan(arguments: Array(arguments.dropFirst()))
    case "distribute":
        try await PipelineBenchmarks.distribute(arguments: Array(arguments.dropFirst()))
    case "nochange":
        try await PipelineBenchmarks.noChange(arguments: Array(arguments.dropFirst()))
    case "critical-path":
        try await CriticalPathBenchmark.run(arguments: Array(arguments.dropFirst()))
    case "azure-nochange":
        try await AzureBenchmarks.noChange(arguments: Array(arguments.dropFirst()))
    case "azure-throttle":
        try await AzureBenchmarks.throttle(arguments: Array(arguments.dropFirst()))
    case "shards":
        try await ShardBenchmark.run(arguments: Array(arguments.dropFirst()))
    case nil, "-h", "--help", "help":
        print(usage)
    default:
        throw BenchError("unknown benchmark \"\(arguments.first!)\"\n\n\(usage)")
    }
} catch {
    FileHandle.standardError.write(Data("imagefactory-bench: \(error)\n".utf8))
    exit(2)
}
