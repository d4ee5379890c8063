import FactoryModel
import Foundation
import Testing

@Suite("Factory settings: file < environment < flags")
struct FactorySettingsTests {
    static let file = SettingsLayer(origin: "Configuration/FactorySettings.json",
                                    values: [.maxConcurrentJobs: "5", .vmSize: "Standard_B2s", .factoryLab: "FileLab"])
    static let environment = SettingsLayer.environment([
        "IMAGEFACTORY_MAX_CONCURRENT_JOBS": "10", "IMAGEFACTORY_LOCATION": "North Europe", "IMAGEFACTORY_FACTORY_LAB": "EnvLab",
    ])
    static let flags = SettingsLayer(origin: "command line", values: [.maxConcurrentJobs: "15", .imagesToSave: "4"])

    @Test("with no layers the built-in defaults apply")
    func defaults() {
        let (settings, diagnostics) = FactorySettings.resolve(layers: [])
        #expect(settings == FactorySettings.defaults)
        #expect(diagnostics.isEmpty)
        #expect(settings.maxConcurrentJobs == 20)
        #expect(settings.imagesToSave == 2)
        #expect(settings.timeoutMinutes == 60)
        #expect(settings.defaultOsState == .generalized)
        #expect(settings.container == "imagefactoryvhds")
    }

    @Test("later layers win, key by key")
    func precedence() {
        let (all, d1) = FactorySettings.resolve(layers: [Self.file, Self.environment, Self.flags])
        #expect(d1.isEmpty)
        #expect(all.maxConcurrentJobs == 15)  // flags over environment over file
        #expect(all.factoryLab == "EnvLab")  // environment over file
        #expect(all.vmSize == "Standard_B2s")  // only in the file
        #expect(all.location == "northeurope")  // only in the environment, normalized
        #expect(all.imagesToSave == 4)  // only in flags
        #expect(all.timeoutMinutes == 60)  // nowhere: default

        let (withoutFlags, _) = FactorySettings.resolve(layers: [Self.file, Self.environment])
        #expect(withoutFlags.maxConcurrentJobs == 10)
        let (fileOnly, _) = FactorySettings.resolve(layers: [Self.file])
        #expect(fileOnly.maxConcurrentJobs == 5)
        #expect(fileOnly.factoryLab == "FileLab")
    }

    @Test("the environment layer reads IMAGEFACTORY_* variables only, skipping empty ones")
    func environmentLayer() {
        let layer = SettingsLayer.environment([
            "IMAGEFACTORY_MAX_CONCURRENT_JOBS": "7", "IMAGEFACTORY_DEFAULT_OS_STATE": "specialized", "IMAGEFACTORY_VM_SIZE": "",
            "MAX_CONCURRENT_JOBS": "99", "imagefactory_images_to_save": "9", "PATH": "/usr/bin",
        ])
        #expect(layer.origin == "environment")
        #expect(layer.values == [.maxConcurrentJobs: "7", .defaultOsState: "specialized"])
    }

    @Test("every setting has an IMAGEFACTORY_ variable in upper snake case", arguments: [
        (SettingKey.subscriptionId, "IMAGEFACTORY_SUBSCRIPTION_ID"),
        (.resourceGroup, "IMAGEFACTORY_RESOURCE_GROUP"),
        (.factoryLab, "IMAGEFACTORY_FACTORY_LAB"),
        (.location, "IMAGEFACTORY_LOCATION"),
        (.maxConcurrentJobs, "IMAGEFACTORY_MAX_CONCURRENT_JOBS"),
        (.imagesToSave, "IMAGEFACTORY_IMAGES_TO_SAVE"),
        (.vmSize, "IMAGEFACTORY_VM_SIZE"),
        (.timeoutMinutes, "IMAGEFACTORY_TIMEOUT_MINUTES"),
        (.defaultOsState, "IMAGEFACTORY_DEFAULT_OS_STATE"),
        (.maxDeletions, "IMAGEFACTORY_MAX_DELETIONS"),
        (.container, "IMAGEFACTORY_CONTAINER"),
    ])
    func environmentVariableNames(key: SettingKey, variable: String) {
        #expect(key.environmentVariable == variable)
        #expect(SettingsLayer.environment([variable: "x"]).values == [key: "x"])
    }

    @Test("every setting can be set from the environment")
    func allKeysFromEnvironment() {
        let environment: [String: String] = [
            "IMAGEFACTORY_SUBSCRIPTION_ID": "sub", "IMAGEFACTORY_RESOURCE_GROUP": "rg", "IMAGEFACTORY_FACTORY_LAB": "lab",
            "IMAGEFACTORY_LOCATION": "East US", "IMAGEFACTORY_MAX_CONCURRENT_JOBS": "3", "IMAGEFACTORY_IMAGES_TO_SAVE": "5",
            "IMAGEFACTORY_VM_SIZE": "Standard_D4s_v5", "IMAGEFACTORY_TIMEOUT_MINUTES": "90", "IMAGEFACTORY_DEFAULT_OS_STATE": "Specialized",
            "IMAGEFACTORY_MAX_DELETIONS": "0", "IMAGEFACTORY_CONTAINER": "vhds",
        ]
        let (s, diagnostics) = FactorySettings.resolve(layers: [.environment(environment)])
        #expect(diagnostics.isEmpty)
        #expect(s == FactorySettings(subscriptionId: "sub", resourceGroup: "rg", factoryLab: "lab", location: "eastus",
                                     maxConcurrentJobs: 3, imagesToSave: 5, vmSize: "Standard_D4s_v5", timeoutMinutes: 90,
                                     defaultOsState: .specialized, maxDeletions: 0, container: "vhds"))
    }

    @Test("a bad environment value is an error naming the variable, and the lower layer's value stays")
    func badEnvironmentValue() throws {
        let environment = SettingsLayer.environment(["IMAGEFACTORY_MAX_CONCURRENT_JOBS": "lots"])
        let (settings, diagnostics) = FactorySettings.resolve(layers: [Self.file, environment])
        let error = try #require(diagnostics.first)
        #expect(diagnostics.count == 1)
        #expect(error.severity == .error)
        #expect(error.message == "IMAGEFACTORY_MAX_CONCURRENT_JOBS = \"lots\" (from environment) must be a whole number from 1 to 1000.")
        #expect(error.file == nil)
        #expect(settings.maxConcurrentJobs == 5)
    }

    @Test("bad values are reported for every layer, with the setting's name and origin", arguments: [
        (SettingKey.maxConcurrentJobs, "0", "must be a whole number from 1 to 1000"),
        (.imagesToSave, "2.5", "must be a whole number from 1 to 1000"),
        (.timeoutMinutes, "-1", "must be a whole number from 1 to 10080"),
        (.timeoutMinutes, "10081", "must be a whole number from 1 to 10080"),
        (.maxDeletions, "many", "must be a whole number from 0 to 1000000"),
        (.defaultOsState, "sysprepped", "must be \"generalized\" or \"specialized\""),
        (.subscriptionId, "   ", "must not be empty"),
        (.location, "", "must not be empty"),
    ])
    func badFlagValues(key: SettingKey, value: String, problem: String) throws {
        let (settings, diagnostics) = FactorySettings.resolve(layers: [SettingsLayer(origin: "command line", values: [key: value])])
        let error = try #require(diagnostics.first)
        #expect(diagnostics.count == 1)
        #expect(error.message == "\(key.rawValue) = \"\(value)\" (from command line) \(problem).")
        #expect(settings == FactorySettings.defaults)
    }

    @Test("several bad values are all reported")
    func severalBadValues() {
        let layer = SettingsLayer(origin: "command line", values: [.maxConcurrentJobs: "x", .imagesToSave: "y", .defaultOsState: "z"])
        let (_, diagnostics) = FactorySettings.resolve(layers: [layer])
        #expect(diagnostics.count == 3)
        #expect(diagnostics.allSatisfy { $0.severity == .error })
    }

    @Test("whole numbers may have surrounding spaces; OS state and location are case-insensitive")
    func lenientParsing() {
        let (s, diagnostics) = FactorySettings.resolve(layers: [SettingsLayer(origin: "command line", values: [
            .maxConcurrentJobs: " 8 ", .defaultOsState: "SPECIALIZED", .location: "West Europe", .maxDeletions: "0",
        ])])
        #expect(diagnostics.isEmpty)
        #expect(s.maxConcurrentJobs == 8)
        #expect(s.defaultOsState == .specialized)
        #expect(s.location == "westeurope")
        #expect(s.maxDeletions == 0)
    }
}

@Suite("FactorySettings.json in the configuration")
struct SettingsFileTests {
    private func load(_ settings: String, layers: [SettingsLayer] = []) throws -> FactoryConfiguration {
        var fixture = Fixture.configuration(templates: ["Win2016/Datacenter.json"], imagePaths: ["Win2016"])
        fixture["FactorySettings.json"] = settings
        return try fixture.load(settingsLayers: layers)
    }

    @Test("the settings file is read with keys in any case, comments skipped, numbers as numbers or strings")
    func readsFile() throws {
        let config = try load("""
            {
              "$comment": "ignored",
              "comment": "ignored too",
              "SubscriptionId": "00000000-0000-4000-8000-000000000000",
              "factorylab": "Factory",
              "maxConcurrentJobs": 4,
              "imagesToSave": "3",
              "location": "West Europe"
            }
            """)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.settings.subscriptionId == "00000000-0000-4000-8000-000000000000")
        #expect(config.settings.factoryLab == "Factory")
        #expect(config.settings.maxConcurrentJobs == 4)
        #expect(config.settings.imagesToSave == 3)
        #expect(config.settings.location == "westeurope")
    }

    @Test("file < environment < flags through the loader")
    func precedenceThroughLoader() throws {
        let settings = #"{ "maxConcurrentJobs": 4, "imagesToSave": 3, "timeoutMinutes": 30 }"#
        let environment = SettingsLayer.environment(["IMAGEFACTORY_IMAGES_TO_SAVE": "6", "IMAGEFACTORY_TIMEOUT_MINUTES": "45"])
        let flags = SettingsLayer(origin: "command line", values: [.timeoutMinutes: "90"])
        let config = try load(settings, layers: [environment, flags])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.settings.maxConcurrentJobs == 4)
        #expect(config.settings.imagesToSave == 6)
        #expect(config.settings.timeoutMinutes == 90)
    }

    @Test("a bad value in the file is an error naming the file")
    func badValueInFile() throws {
        let config = try load(#"{ "maxConcurrentJobs": 0, "defaultOsState": "frozen" }"#)
        let errors = config.diagnostics.errors
        #expect(errors.count == 2, "\(errors)")
        #expect(errors.allSatisfy { $0.file == "Configuration/FactorySettings.json" })
        #expect(errors.contains { $0.message == "maxConcurrentJobs = \"0\" (from Configuration/FactorySettings.json) must be a whole number from 1 to 1000." })
        #expect(errors.contains { $0.message.hasPrefix("defaultOsState = \"frozen\"") })
        #expect(!config.isValid)
    }

    @Test("a good flag does not hide a bad file value: both layers are checked")
    func badFileGoodFlag() throws {
        let config = try load(#"{ "maxConcurrentJobs": "none" }"#,
                              layers: [SettingsLayer(origin: "command line", values: [.maxConcurrentJobs: "12"])])
        #expect(config.settings.maxConcurrentJobs == 12)
        #expect(config.diagnostics.errors.count == 1)
    }

    @Test("an unknown setting is a warning on its line, listing the known ones")
    func unknownSetting() throws {
        let config = try load("{\n  \"maxConcurentJobs\": 4\n}\n")
        let warning = try #require(config.diagnostics.warnings.first)
        #expect(config.diagnostics.count == 1)
        #expect(warning.message == "Unknown setting \"maxConcurentJobs\" is ignored.")
        #expect(warning.line == 2)
        #expect(warning.hint?.contains("maxConcurrentJobs") == true)
        #expect(config.settings.maxConcurrentJobs == 20)
    }

    @Test("a setting that is neither string nor number is an error on its line")
    func settingOfWrongType() throws {
        let config = try load("{\n  \"vmSize\": [\"Standard_B2s\"]\n}\n")
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.message == "Setting \"vmSize\" must be a string or a number.")
        #expect(error.line == 2)
    }

    @Test("a settings file that is not an object is an error; invalid JSON is located")
    func settingsFileShape() throws {
        let notObject = try load("[]")
        #expect(notObject.diagnostics.errors.map(\.message) == ["The settings file must hold a JSON object."])
        let invalid = try load("{\n  \"vmSize\": \n}")
        let error = try #require(invalid.diagnostics.errors.first)
        #expect(error.message.hasPrefix("Invalid JSON"))
        #expect(error.file == "Configuration/FactorySettings.json")
        #expect(error.line == 3)
    }

    @Test("the settings file name is found in any case")
    func fileNameCase() throws {
        var fixture = Fixture.configuration(templates: ["Win2016/Datacenter.json"], imagePaths: ["Win2016"])
        fixture["factorysettings.json"] = #"{ "imagesToSave": 7 }"#
        #expect(try fixture.load().settings.imagesToSave == 7)
    }
}
