import FactoryModel
import Foundation
import Testing

@Suite("Sample configurations")
struct SampleConfigurationTests {
    @Test("the original Azure sample validates with zero errors and one warning for its placeholder names, which plan and run refuse")
    func azureSample() throws {
        let config = try ConfigFixture(AzureSampleConfiguration.files).load()
        #expect(config.diagnostics.errors.isEmpty, "\(config.diagnostics)")
        #expect(config.diagnostics.count == 1, "one warning per entry: \(config.diagnostics)")
        let warning = try #require(config.diagnostics.first)
        #expect(warning.severity == .warning && warning.line == 6)
        #expect(warning.message.contains("SubscriptionId") && warning.message.contains("LabName") && warning.message.contains("ResourceGroup"))
        #expect(config.isValid)
        // What validate lets pass, plan and run refuse, with the entry's line.
        #expect(config.azureNameErrors.count == 3)
        #expect(config.azureNameErrors.allSatisfy { $0.severity == .error && $0.line == 6 && $0.file == "Configuration/Labs.json" })

        let lab = try #require(config.labs.first)
        #expect(config.labs.count == 1)
        #expect(lab.resourceGroup == "<resource group name>")
        #expect(lab.labName == "<Name of the DevTest Lab>")
        #expect(lab.imagePaths == ["Win2012R2/VS2015 Enterprise with Azure SDK.json", "Win2016"])
        #expect(lab.images == ["Win2012R2/VS2015 Enterprise with Azure SDK.json", "Win2016/Datacenter.json",
                               "Win2016/SQLServer 2016 Express.json"])

        #expect(config.templates.map(\.path) == ["Win2012R2/VS2015 Enterprise with Azure SDK.json", "Win2016/Datacenter.json",
                                                 "Win2016/SQLServer 2016 Express.json"])
        #expect(config.templates.map(\.vmName) == ["VS2015Enterpr", "Datacenter", "SQLServer2016"])
        #expect(config.templates.map(\.imageName) == ["Win2012R2_VS2015-Enterprise-with-Azure-SDK", "Win2016_Datacenter",
                                                      "Win2016_SQLServer-2016-Express"])
        #expect(config.templates.allSatisfy { $0.osType == .windows && $0.osState == .generalized })
        #expect(config.template(at: "Win2016/SQLServer 2016 Express.json")?.description
                    == "Free License: SQL Server 2016 SP1 Express on Windows Server 2016")
        #expect(config.template(at: "Win2016/SQLServer 2016 Express.json")?.galleryImageReference?.offer == "SQL2016SP1-WS2016")
        #expect(config.settings == FactorySettings.defaults)
    }

    @Test("the sample saved by Windows PowerShell as UTF-16 validates the same")
    func azureSampleAsUTF16() throws {
        var fixture = ConfigFixture()
        for (path, text) in AzureSampleConfiguration.files { fixture.files[path] = text.utf16LEWithBOM }
        let config = try fixture.load()
        #expect(config.diagnostics.map(\.message) == (try ConfigFixture(AzureSampleConfiguration.files).load()).diagnostics.map(\.message))
        #expect(config.templates.count == 3)
        #expect(config.labs.first?.images.count == 3)
    }

    @Test("this repository's Configuration/ validates with zero errors and zero warnings")
    func repositorySample() throws {
        let folder = Self.packageRoot().appendingPathComponent("Configuration")
        var fixture = ConfigFixture()
        let enumerator = try #require(FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey]))
        for case let url as URL in enumerator where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            let relative = String(url.standardizedFileURL.path.dropFirst(folder.standardizedFileURL.path.count + 1))
            fixture.files[relative] = try Data(contentsOf: url)
        }
        #expect(fixture.files.keys.contains("Labs.json"))
        let config = try fixture.load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.templates.count == fixture.files.keys.filter { $0.hasPrefix("GoldenImages/") && $0.hasSuffix(".json") }.count)
        #expect(config.templates.count >= 5)
        #expect(config.labs.count >= 2)
        // Every template reaches at least one lab, and names are unique.
        let delivered = Set(config.labs.flatMap(\.images))
        #expect(Set(config.templates.map(\.path)) == delivered)
        #expect(Set(config.templates.map { $0.vmName.lowercased() }).count == config.templates.count)
        #expect(Set(config.templates.map { $0.imageName.lowercased() }).count == config.templates.count)
        #expect(config.labs.allSatisfy { lab in lab.imagePaths.allSatisfy { !$0.contains("\\") } })
    }

    /// The package root: the folder above `Tests/` holding Package.swift.
    static func packageRoot(file: String = #filePath) -> URL {
        var url = URL(fileURLWithPath: file).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
            url.deleteLastPathComponent()
        }
        return URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}
