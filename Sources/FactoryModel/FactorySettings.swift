import Foundation

/// Settings of the factory itself. Precedence, lowest to highest: built-in defaults, the
/// settings file `FactorySettings.json` in the configuration folder, `IMAGEFACTORY_*`
/// environment variables, command-line flags.
public struct FactorySettings: Codable, Sendable, Equatable {
    /// Subscription of the factory lab. Required by the Azure backend; the local cloud uses a fixed one.
    public var subscriptionId: String
    public var resourceGroup: String
    /// The DevTest Lab where factory VMs are built and VHDs are kept.
    public var factoryLab: String
    public var location: String
    public var maxConcurrentJobs: Int
    public var imagesToSave: Int
    public var vmSize: String
    /// Limit for each long-running operation (deployment, copy, image creation).
    public var timeoutMinutes: Int
    public var defaultOsState: OSState
    /// A run that would delete more images than this stops before deleting anything.
    public var maxDeletions: Int
    /// Storage container holding the factory's VHDs and records (the original's name).
    public var container: String

    public static let defaults = FactorySettings(
        subscriptionId: "00000000-0000-0000-0000-000000000000", resourceGroup: "ImageFactory", factoryLab: "ImageFactory",
        location: "westeurope", maxConcurrentJobs: 20, imagesToSave: 2, vmSize: "Standard_DS2_v2", timeoutMinutes: 60,
        defaultOsState: .generalized, maxDeletions: 50, container: "imagefactoryvhds")

    public init(subscriptionId: String, resourceGroup: String, factoryLab: String, location: String, maxConcurrentJobs: Int,
                imagesToSave: Int, vmSize: String, timeoutMinutes: Int, defaultOsState: OSState, maxDeletions: Int, container: String) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.factoryLab = factoryLab
        self.location = location
        self.maxConcurrentJobs = maxConcurrentJobs
        self.imagesToSave = imagesToSave
        self.vmSize = vmSize
        self.timeoutMinutes = timeoutMinutes
        self.defaultOsState = defaultOsState
        self.maxDeletions = maxDeletions
        self.container = container
    }

    /// The file name looked up in the configuration folder.
    public static let fileName = "FactorySettings.json"
}

/// One layer of settings (file, environment or flags); nil means "not set here".
public struct SettingsLayer: Sendable, Equatable {
    public var values: [SettingKey: String] = [:]
    /// Where this layer came from, for messages (`Configuration/FactorySettings.json`, `environment`, `command line`).
    public var origin: String

    public init(origin: String, values: [SettingKey: String] = [:]) {
        self.origin = origin
        self.values = values
    }

    /// The `IMAGEFACTORY_*` environment variables.
    public static func environment(_ env: [String: String]) -> SettingsLayer {
        var layer = SettingsLayer(origin: "environment")
        for key in SettingKey.allCases {
            if let value = env[key.environmentVariable], !value.isEmpty { layer.values[key] = value }
        }
        return layer
    }
}

/// The settings a user can set, with their names in each layer.
public enum SettingKey: String, CaseIterable, Sendable, Hashable, Codable {
    case subscriptionId, resourceGroup, factoryLab, location, maxConcurrentJobs, imagesToSave, vmSize
    case timeoutMinutes, defaultOsState, maxDeletions, container

    /// `IMAGEFACTORY_MAX_CONCURRENT_JOBS` for `maxConcurrentJobs`.
    public var environmentVariable: String {
        var out = "IMAGEFACTORY_"
        for c in rawValue {
            if c.isUppercase { out += "_" }
            out += c.uppercased()
        }
        return out
    }
}

extension FactorySettings {
    /// Applies layers in order (later wins) over the defaults, collecting a diagnostic for each bad value.
    public static func resolve(layers: [SettingsLayer], file: String? = nil) -> (FactorySettings, [Diagnostic]) {
        var s = FactorySettings.defaults
        var diagnostics: [Diagnostic] = []
        for layer in layers {
            for key in SettingKey.allCases {
                guard let raw = layer.values[key] else { continue }
                func bad(_ what: String) {
                    let name = layer.origin == "environment" ? key.environmentVariable : key.rawValue
                    diagnostics.append(.error("\(name) = \"\(raw)\" (from \(layer.origin)) \(what).",
                                              file: layer.origin.hasSuffix(".json") ? layer.origin : nil))
                }
                func int(_ range: ClosedRange<Int>) -> Int? {
                    guard let v = Int(raw.trimmingCharacters(in: .whitespaces)), range.contains(v) else {
                        bad("must be a whole number from \(range.lowerBound) to \(range.upperBound)")
                        return nil
                    }
                    return v
                }
                func text() -> String? {
                    let t = raw.trimmingCharacters(in: .whitespaces)
                    if t.isEmpty { bad("must not be empty"); return nil }
                    return t
                }
                switch key {
                case .subscriptionId: if let v = text() { s.subscriptionId = v }
                case .resourceGroup: if let v = text() { s.resourceGroup = v }
                case .factoryLab: if let v = text() { s.factoryLab = v }
                case .location: if let v = text() { s.location = Location.normalize(v) }
                case .vmSize: if let v = text() { s.vmSize = v }
                case .container: if let v = text() { s.container = v }
                case .maxConcurrentJobs: if let v = int(1...1000) { s.maxConcurrentJobs = v }
                case .imagesToSave: if let v = int(1...1000) { s.imagesToSave = v }
                case .timeoutMinutes: if let v = int(1...10080) { s.timeoutMinutes = v }
                case .maxDeletions: if let v = int(0...1_000_000) { s.maxDeletions = v }
                case .defaultOsState:
                    if let v = OSState(caseInsensitive: raw.trimmingCharacters(in: .whitespaces)) { s.defaultOsState = v } else {
                        bad("must be \"generalized\" or \"specialized\"")
                    }
                }
            }
        }
        return (s, diagnostics)
    }

    /// Reads the settings file's JSON object into a layer (keys in any case).
    static func fileLayer(_ object: Any, file: String, lines: LineIndex) -> (SettingsLayer, [Diagnostic]) {
        var layer = SettingsLayer(origin: file)
        guard let dict = object as? [String: Any] else {
            return (layer, [.error("The settings file must hold a JSON object.", file: file, line: 1)])
        }
        var diagnostics: [Diagnostic] = []
        let known = Dictionary(uniqueKeysWithValues: SettingKey.allCases.map { ($0.rawValue.lowercased(), $0) })
        for (rawKey, value) in dict.sorted(by: { $0.key < $1.key }) {
            if rawKey.hasPrefix("$") || rawKey.lowercased() == "comment" { continue }
            guard let key = known[rawKey.lowercased()] else {
                diagnostics.append(.warning("Unknown setting \"\(rawKey)\" is ignored.", file: file,
                                            line: lines.locate("\"\(rawKey)\"")?.line,
                                            hint: "Known settings: \(SettingKey.allCases.map(\.rawValue).joined(separator: ", ")).")
                )
                continue
            }
            switch value {
            case let s as String: layer.values[key] = s
            case let n as NSNumber: layer.values[key] = n.stringValue
            default:
                diagnostics.append(.error("Setting \"\(rawKey)\" must be a string or a number.", file: file,
                                          line: lines.locate("\"\(rawKey)\"")?.line))
            }
        }
        return (layer, diagnostics)
    }
}

/// Azure location names: `West Europe` and `westeurope` are the same place.
public enum Location {
    public static func normalize(_ raw: String) -> String {
        raw.lowercased().filter { !$0.isWhitespace }
    }
}
