import FactoryModel
import Foundation

/// An in-memory configuration folder under construction: files by path relative to the
/// configuration folder, as bytes so tests can choose the encoding.
struct ConfigFixture {
    var files: [String: Data] = [:]
    var commit: String? = "1234567890abcdef1234567890abcdef12345678"

    init(_ texts: [String: String] = [:]) {
        for (path, text) in texts { files[path] = Data(text.utf8) }
    }

    subscript(path: String) -> String? {
        get { files[path].flatMap { String(data: $0, encoding: .utf8) } }
        set { files[path] = newValue.map { Data($0.utf8) } }
    }

    var snapshot: ConfigSnapshot {
        ConfigSnapshot(commit: commit, files: files.keys.sorted().map { ConfigFile(path: $0, data: files[$0]!) })
    }

    func load(settingsLayers: [SettingsLayer] = []) throws -> FactoryConfiguration {
        ConfigurationLoader.load(try InMemoryConfigSource(snapshot: snapshot).load(), settingsLayers: settingsLayers)
    }
}

/// Builders for the JSON files a configuration holds.
enum Fixture {
    struct Lab {
        var subscriptionId = "11111111-1111-4111-8111-111111111111"
        var resourceGroup: String? = "rg-labs"
        var labName = "DevLab"
        var imagePaths: [String]
    }

    /// A Labs.json with one property per line, in the original's property order.
    static func labs(_ labs: [Lab]) -> String {
        let entries = labs.map { lab -> String in
            var lines = ["    {"]
            if let group = lab.resourceGroup { lines.append("      \"ResourceGroup\": \(quoted(group)),") }
            lines.append("      \"SubscriptionId\": \(quoted(lab.subscriptionId)),")
            lines.append("      \"LabName\": \(quoted(lab.labName)),")
            lines.append("      \"ImagePaths\": [")
            lines.append(lab.imagePaths.map { "        \(quoted($0))" }.joined(separator: ",\n"))
            lines.append("      ]")
            lines.append("    }")
            return lines.joined(separator: "\n")
        }
        return "{\n  \"Labs\": [\n" + entries.joined(separator: ",\n") + "\n  ]\n}\n"
    }

    static func labs(imagePaths: [String]) -> String {
        labs([Lab(imagePaths: imagePaths)])
    }

    /// A golden image ARM template shaped like the original's samples.
    static func template(osType: String? = "Windows", notes: String = "A golden image", publisher: String = "MicrosoftWindowsServer",
                         imageFactory: [String: Any]? = nil, artifacts: [String] = [],
                         vmType: String = "Microsoft.DevTestLab/labs/virtualmachines") -> String {
        var gallery: [String: Any] = ["publisher": publisher, "offer": "WindowsServer", "sku": "2016-Datacenter", "version": "latest"]
        if let osType { gallery["osType"] = osType }
        var properties: [String: Any] = [
            "notes": notes,
            "galleryImageReference": gallery,
            "size": "[parameters('size')]",
            "userName": "[parameters('userName')]",
            "password": "[parameters('password')]",
        ]
        if !artifacts.isEmpty {
            properties["artifacts"] = artifacts.map {
                ["artifactId": "[resourceId('Microsoft.DevTestLab/labs/artifactSources/artifacts', parameters('labName'), 'public repo', '\($0)')]"]
            }
        }
        var root: [String: Any] = [
            "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
            "contentVersion": "1.0.0.0",
            "parameters": [
                "newVMName": ["type": "string"], "labName": ["type": "string"], "size": ["type": "string"],
                "userName": ["type": "string"], "password": ["type": "securestring"],
            ],
            "resources": [[
                "apiVersion": "2018-10-15-preview",
                "type": vmType,
                "name": "[concat(parameters('labName'), '/', parameters('newVMName'))]",
                "location": "[resourceGroup().location]",
                "properties": properties,
            ] as [String: Any]],
        ]
        if let imageFactory { root["metadata"] = ["imageFactory": imageFactory] }
        return json(root)
    }

    static func json(_ object: Any) -> String {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    static func quoted(_ s: String) -> String {
        let escaped = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        // Control characters as JSON escapes (\u0000, \u000a), so a name holding one still makes valid JSON.
        return "\"" + escaped.unicodeScalars.map { $0.value < 0x20 ? String(format: "\\u%04x", $0.value) : String($0) }.joined() + "\""
    }

    /// A configuration with one lab subscribing to `imagePaths` and a Windows template at each of `templates`.
    static func configuration(templates: [String], imagePaths: [String]) -> ConfigFixture {
        var fixture = ConfigFixture(["Labs.json": labs(imagePaths: imagePaths)])
        for path in templates { fixture["GoldenImages/" + path] = template() }
        return fixture
    }
}

extension FactoryConfiguration {
    /// Diagnostics whose message contains `text`.
    func diagnostics(containing text: String) -> [Diagnostic] {
        diagnostics.filter { $0.message.contains(text) }
    }
}

extension String {
    /// The text as UTF-16 little-endian with a byte-order mark, as Windows PowerShell writes it.
    var utf16LEWithBOM: Data {
        var data = Data([0xFF, 0xFE])
        for unit in utf16 { data.append(contentsOf: [UInt8(unit & 0xFF), UInt8(unit >> 8)]) }
        return data
    }

    var utf16BEWithBOM: Data {
        var data = Data([0xFE, 0xFF])
        for unit in utf16 { data.append(contentsOf: [UInt8(unit >> 8), UInt8(unit & 0xFF)]) }
        return data
    }

    var utf8WithBOM: Data { Data([0xEF, 0xBB, 0xBF]) + Data(utf8) }
}
