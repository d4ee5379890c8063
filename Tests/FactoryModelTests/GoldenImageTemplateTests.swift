import FactoryModel
import Foundation
import Testing

@Suite("Golden image templates")
struct GoldenImageTemplateTests {
    /// A configuration whose one lab subscribes to everything under `GoldenImages/`, so only template problems show.
    private func load(_ templates: [String: String], settings: String? = nil, layers: [SettingsLayer] = []) throws -> FactoryConfiguration {
        let folders = Set(templates.keys.map { String($0.split(separator: "/").first!) }).sorted()
        var fixture = ConfigFixture(["Labs.json": Fixture.labs(imagePaths: folders)])
        for (path, text) in templates { fixture["GoldenImages/" + path] = text }
        if let settings { fixture["FactorySettings.json"] = settings }
        return try fixture.load(settingsLayers: layers)
    }

    @Test("a template's fields are read: OS, description, gallery image, artifacts, identity")
    func fields() throws {
        let text = Fixture.template(osType: "Windows", notes: "Windows Server 2016 Datacenter",
                                    artifacts: ["windows-chrome", "windows-7zip"])
        let config = try load(["Win2016/Datacenter.json": text])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let template = try #require(config.template(at: "Win2016/Datacenter.json"))
        #expect(template.osType == .windows)
        #expect(template.osState == .generalized)
        #expect(template.description == "Windows Server 2016 Datacenter")
        #expect(template.galleryImageReference == GalleryImageReference(publisher: "MicrosoftWindowsServer", offer: "WindowsServer",
                                                                        sku: "2016-Datacenter", osType: "Windows", version: "latest"))
        #expect(template.artifacts.map(\.name) == ["windows-chrome", "windows-7zip"])
        #expect(template.blobSha == GitBlobHash.sha(of: Data(text.utf8)))
        #expect(template.templateJSON == Data(text.utf8))
        #expect(template.vmName == "Datacenter")
        #expect(template.imageName == "Win2016_Datacenter")
        #expect(template.vmSize == nil)  // an ARM expression, not a literal
    }

    @Test("osType is read in any case and from properties when there is no gallery image")
    func osTypeSpellings() throws {
        let vm: [String: Any] = [
            "type": "microsoft.devtestlab/labs/VirtualMachines",
            "properties": ["customImageId": "/subscriptions/x/images/y", "osType": "linux", "size": "Standard_B2s"],
        ]
        let customImage = Fixture.json(["resources": [vm]])
        let config = try load(["Linux/Custom.json": customImage, "Linux/Lower.json": Fixture.template(osType: "linux")])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.templates.map(\.osType) == [.linux, .linux])
        #expect(config.template(at: "Linux/Custom.json")?.vmSize == "Standard_B2s")
        #expect(config.template(at: "Linux/Custom.json")?.galleryImageReference == nil)
    }

    @Test("a template without a lab VM resource is an error naming the file, and is not loaded")
    func noLabVMResource() throws {
        let config = try load([
            "Win2016/Datacenter.json": Fixture.template(),
            "Win2016/PlainVM.json": Fixture.template(vmType: "Microsoft.Compute/virtualMachines"),
        ])
        let error = try #require(config.diagnostics.errors.first)
        #expect(config.diagnostics.errors.count == 1)
        #expect(error.message == "The template has no Microsoft.DevTestLab/labs/virtualmachines resource.")
        #expect(error.file == "Configuration/GoldenImages/Win2016/PlainVM.json")
        #expect(error.line != nil)
        #expect(config.templates.map(\.path) == ["Win2016/Datacenter.json"])
        // The lab's ImagePath still resolves to both files: the broken one is in the commit.
        #expect(config.labs.first?.images == ["Win2016/Datacenter.json", "Win2016/PlainVM.json"])
    }

    @Test("a template that is not a deployment template is an error", arguments: [
        ("[1, 2]", "The template is not a JSON object."),
        ("{ \"parameters\": {} }", "The template has no \"resources\" array."),
        ("{ \"resources\": [ { \"type\": \"Microsoft.DevTestLab/labs/virtualmachines\" } ] }",
         "The lab VM resource has no \"properties\" object."),
    ])
    func notADeploymentTemplate(text: String, message: String) throws {
        let config = try load(["Win2016/Broken.json": text])
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.message == message)
        #expect(error.file == "Configuration/GoldenImages/Win2016/Broken.json")
        #expect(config.templates.isEmpty)
    }

    @Test("a template without osType is an error and is not loaded")
    func noOSType() throws {
        let config = try load(["Win2016/Datacenter.json": Fixture.template(osType: nil)])
        let error = try #require(config.diagnostics.errors.first)
        #expect(config.diagnostics.errors.count == 1)
        #expect(error.message == "The lab VM has no valid osType (found nothing).")
        #expect(error.file == "Configuration/GoldenImages/Win2016/Datacenter.json")
        #expect(error.hint?.contains("\"Windows\" or \"Linux\"") == true)
        #expect(config.templates.isEmpty)
    }

    @Test("an unknown osType is an error quoting it, on the osType line")
    func unknownOSType() throws {
        let text = Fixture.template(osType: "Solaris")
        let config = try load(["Win2016/Datacenter.json": text])
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.message == "The lab VM has no valid osType (found \"Solaris\").")
        let expectedLine = text.split(separator: "\n", omittingEmptySubsequences: false)
            .firstIndex { $0.contains("\"osType\"") }.map { $0 + 1 }
        #expect(error.line == expectedLine)
        #expect(config.templates.isEmpty)
    }

    @Test("a gallery image without publisher is an error")
    func galleryImageIncomplete() throws {
        let config = try load(["Win2016/Datacenter.json": Fixture.template(publisher: "")])
        #expect(config.diagnostics.errors.map(\.message) == ["galleryImageReference.publisher is missing or not a string."])
        #expect(config.templates.isEmpty)
    }

    @Test("an artifact without artifactId is an error")
    func artifactWithoutId() throws {
        let properties: [String: Any] = [
            "galleryImageReference": ["publisher": "p", "offer": "o", "sku": "s", "osType": "Windows"],
            "artifacts": [["parameters": [Any]()]],
        ]
        let vm: [String: Any] = ["type": "Microsoft.DevTestLab/labs/virtualmachines", "properties": properties]
        let text = Fixture.json(["resources": [vm]])
        let config = try load(["Win2016/Datacenter.json": text])
        #expect(config.diagnostics.errors.map(\.message) == ["artifacts[0] has no artifactId string."])
    }

    @Test("metadata.imageFactory.osState specialized overrides the default")
    func specializedOverride() throws {
        let config = try load([
            "Win2016/Datacenter.json": Fixture.template(),
            "Win2016/Snapshot.json": Fixture.template(imageFactory: ["osState": "Specialized"]),
        ])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.settings.defaultOsState == .generalized)
        #expect(config.template(at: "Win2016/Datacenter.json")?.osState == .generalized)
        #expect(config.template(at: "Win2016/Snapshot.json")?.osState == .specialized)
    }

    @Test("a specialized default from the settings applies to templates that do not say, and the template's choice wins")
    func defaultFromSettings() throws {
        let config = try load([
            "Win2016/Datacenter.json": Fixture.template(),
            "Win2016/Sysprepped.json": Fixture.template(imageFactory: ["osState": "generalized"]),
        ], settings: #"{ "defaultOsState": "specialized" }"#)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.template(at: "Win2016/Datacenter.json")?.osState == .specialized)
        #expect(config.template(at: "Win2016/Sysprepped.json")?.osState == .generalized)
    }

    @Test("the default from the command line reaches templates too")
    func defaultFromFlags() throws {
        let config = try load(["Win2016/Datacenter.json": Fixture.template()],
                              layers: [SettingsLayer(origin: "command line", values: [.defaultOsState: "specialized"])])
        #expect(config.template(at: "Win2016/Datacenter.json")?.osState == .specialized)
    }

    @Test("a bad metadata.imageFactory.osState is an error", arguments: ["sysprepped", "42"])
    func badOSState(value: String) throws {
        let state: Any = value == "42" ? 42 : value
        let config = try load(["Win2016/Datacenter.json": Fixture.template(imageFactory: ["osState": state])])
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.message == "metadata.imageFactory.osState must be \"generalized\" or \"specialized\".")
        #expect(error.file == "Configuration/GoldenImages/Win2016/Datacenter.json")
        #expect(error.line != nil)
        #expect(config.templates.isEmpty)
    }

    @Test("generalized images get the OS's generalize artifact last; specialized ones do not")
    func factoryArtifacts() throws {
        let config = try load([
            "Win2016/Datacenter.json": Fixture.template(artifacts: ["windows-chrome"]),
            "Win2016/AlreadySysprepped.json": Fixture.template(artifacts: ["windows-chrome", "windows-sysprep"]),
            "Win2016/Snapshot.json": Fixture.template(imageFactory: ["osState": "specialized"], artifacts: ["windows-chrome"]),
            "Linux/Ubuntu.json": Fixture.template(osType: "Linux"),
        ])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.template(at: "Win2016/Datacenter.json")?.factoryArtifacts.map(\.name) == ["windows-chrome", "windows-sysprep"])
        #expect(config.template(at: "Win2016/AlreadySysprepped.json")?.factoryArtifacts.map(\.name) == ["windows-chrome", "windows-sysprep"])
        #expect(config.template(at: "Win2016/Snapshot.json")?.factoryArtifacts.map(\.name) == ["windows-chrome"])
        #expect(config.template(at: "Linux/Ubuntu.json")?.factoryArtifacts.map(\.name) == ["linux-deprovision"])
    }

    @Test("artifact short names come from resourceId expressions and plain ids")
    func artifactShortNames() {
        #expect(ArtifactReference.shortName(of: "[resourceId('Microsoft.DevTestLab/labs/artifactSources/artifacts', parameters('labName'), 'public repo', 'windows-chrome')]") == "windows-chrome")
        #expect(ArtifactReference.shortName(of: "/artifactsources/public repo/artifacts/linux-deprovision") == "linux-deprovision")
    }
}

@Suite("Factory VM names across templates")
struct TemplateVMNameTests {
    private func load(_ templates: [String: String]) throws -> FactoryConfiguration {
        var fixture = ConfigFixture(["Labs.json": Fixture.labs(imagePaths: ["Images"])])
        for (path, text) in templates { fixture["GoldenImages/Images/" + path] = text }
        return try fixture.load()
    }

    @Test("an explicit metadata.imageFactory.vmName is used as is")
    func explicitName() throws {
        let config = try load(["SQLServer 2016 Express.json": Fixture.template(imageFactory: ["vmName": "sql16-express"])])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.templates.first?.vmName == "sql16-express")
    }

    @Test("two templates with the same explicit vmName (any case) collide: an error names the other file")
    func explicitCollision() throws {
        let config = try load([
            "A.json": Fixture.template(imageFactory: ["vmName": "BuildVM"]),
            "B.json": Fixture.template(imageFactory: ["vmName": "buildvm"]),
        ])
        let error = try #require(config.diagnostics.errors.first)
        #expect(config.diagnostics.errors.count == 1)
        #expect(error.message == "VM name \"buildvm\" is also used by Configuration/GoldenImages/Images/A.json: the factory VMs would collide.")
        #expect(error.file == "Configuration/GoldenImages/Images/B.json")
        #expect(error.hint?.contains("metadata.imageFactory.vmName") == true)
        #expect(!config.isValid)
    }

    @Test("a derived name never takes an explicit one: the derived template gets a suffix")
    func derivedAvoidsExplicit() throws {
        let config = try load([
            "Datacenter.json": Fixture.template(),
            "Other.json": Fixture.template(imageFactory: ["vmName": "DATACENTER"]),
        ])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let derived = try #require(config.template(at: "Images/Datacenter.json")?.vmName)
        #expect(derived.hasPrefix("Datacenter"))
        #expect(derived.count == 13)
        #expect(derived.dropFirst(10).allSatisfy { $0.isNumber })
        #expect(config.template(at: "Images/Other.json")?.vmName == "DATACENTER")
    }

    @Test("an explicit vmName Azure would refuse is an error", arguments: [
        ("ThisNameIsTooLong", "is 17 characters long; Windows VM names are at most 15"),
        ("12345", "cannot be all digits"),
        ("build_vm", "may contain only letters, digits and hyphens"),
        ("-build", "cannot start or end with a hyphen"),
        ("", "is empty"),
    ])
    func invalidExplicitName(name: String, problem: String) throws {
        let config = try load(["A.json": Fixture.template(imageFactory: ["vmName": name])])
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.message == "metadata.imageFactory.vmName \"\(name)\" \(problem).")
        #expect(error.file == "Configuration/GoldenImages/Images/A.json")
    }

    @Test("a Linux VM name may be longer than 15 characters")
    func linuxLongName() throws {
        let config = try load(["A.json": Fixture.template(osType: "Linux", imageFactory: ["vmName": "ubuntu-2204-data-science"])])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.templates.first?.vmName == "ubuntu-2204-data-science")
    }

    @Test("a vmName that is not a string is an error")
    func vmNameNotString() throws {
        let config = try load(["A.json": Fixture.template(imageFactory: ["vmName": 12])])
        #expect(config.diagnostics.errors.map(\.message) == ["metadata.imageFactory.vmName must be a string."])
    }

    @Test("derived names are unique, at most 15 characters and the same on every load")
    func derivedNames() throws {
        var templates: [String: String] = [:]
        for folder in ["Server 2016", "Server 2019", "Server 2022", "Core"] {
            templates["\(folder)/Datacenter.json"] = Fixture.template()
            templates["\(folder)/SQLServer 2016 Express.json"] = Fixture.template()
        }
        var fixture = ConfigFixture(["Labs.json": Fixture.labs(imagePaths: ["Images"])])
        for (path, text) in templates { fixture["GoldenImages/Images/" + path] = text }
        let first = try fixture.load()
        // Image names differ (they include the folders), so only the VM names needed suffixes.
        #expect(first.diagnostics.isEmpty, "\(first.diagnostics)")
        let names = first.templates.map(\.vmName)
        #expect(names.count == 8)
        #expect(Set(names.map { $0.lowercased() }).count == 8)
        #expect(names.allSatisfy { $0.count <= 15 })
        #expect(names.allSatisfy { Naming.vmNameProblem($0, osType: .windows) == nil })
        // The first in path order keeps the plain name.
        #expect(first.template(at: "Images/Core/Datacenter.json")?.vmName == "Datacenter")
        #expect(first.template(at: "Images/Core/SQLServer 2016 Express.json")?.vmName == "SQLServer2016")
        // Reversing the file order in the snapshot changes nothing.
        var reversed = fixture.snapshot
        reversed.files.reverse()
        let second = ConfigurationLoader.load(reversed)
        #expect(second.templates.map(\.vmName) == names)
    }

    @Test("two templates that would make the same image name are an error")
    func imageNameCollision() throws {
        let config = try load([
            "Win2016/Data.center.json": Fixture.template(),
            "Win2016/Data_center.json": Fixture.template(),
        ])
        let error = try #require(config.diagnostics.errors.first)
        #expect(config.diagnostics.errors.count == 1)
        #expect(error.message == "Image name \"Images_Win2016_Data_center\" would be made by both Images/Win2016/Data.center.json and Images/Win2016/Data_center.json.")
        #expect(error.file == "Configuration/GoldenImages/Images/Win2016/Data_center.json")
    }
}
