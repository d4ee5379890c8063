import FactoryModel
import Foundation

/// One Azure cloud's endpoints: where ARM and Entra live and which token scopes they want.
///
/// The sovereign clouds differ in every host; a user names the cloud (`--cloud`) and may override
/// ARM (`--arm-endpoint`) and the authority (`AZURE_AUTHORITY_HOST`) one by one, for a private
/// endpoint, a proxy or `imagefactory local serve`. Blob endpoints are never derived from a
/// suffix here: each comes from its storage account (`properties.primaryEndpoints.blob`).
public struct AzureCloudProfile: Sendable, Equatable {
    public enum Name: String, Sendable, CaseIterable {
        case azureCloud = "AzureCloud"
        case azureChinaCloud = "AzureChinaCloud"
        case azureUSGovernment = "AzureUSGovernment"

        /// Accepts the names `az cloud list` prints, ignoring case.
        public init?(caseInsensitive text: String) {
            guard let found = Name.allCases.first(where: { $0.rawValue.lowercased() == text.lowercased() }) else { return nil }
            self = found
        }
    }

    public var name: Name
    /// The ARM front door, e.g. `https://management.azure.com`.
    public var armEndpoint: URL
    /// The Entra authority host, e.g. `https://login.microsoftonline.com`.
    public var authorityHost: URL
    /// The scope of ARM tokens (`{audience}/.default`). It names the cloud's audience, not the
    /// endpoint actually called, so an overridden endpoint still gets the tokens ARM accepts.
    public var managementScope: String
    /// The scope of Blob tokens: the same in every cloud.
    public var storageScope: String

    public static func named(_ name: Name) -> AzureCloudProfile {
        switch name {
        case .azureCloud:
            return AzureCloudProfile(name: name, armEndpoint: URL(string: "https://management.azure.com")!,
                                     authorityHost: URL(string: "https://login.microsoftonline.com")!,
                                     managementScope: "https://management.azure.com/.default", storageScope: storageScope)
        case .azureChinaCloud:
            return AzureCloudProfile(name: name, armEndpoint: URL(string: "https://management.chinacloudapi.cn")!,
                                     authorityHost: URL(string: "https://login.chinacloudapi.cn")!,
                                     managementScope: "https://management.chinacloudapi.cn/.default", storageScope: storageScope)
        case .azureUSGovernment:
            return AzureCloudProfile(name: name, armEndpoint: URL(string: "https://management.usgovcloudapi.net")!,
                                     authorityHost: URL(string: "https://login.microsoftonline.us")!,
                                     managementScope: "https://management.usgovcloudapi.net/.default", storageScope: storageScope)
        }
    }

    static let storageScope = "https://storage.azure.com/.default"

    /// The profile a run uses: `--cloud` / `IMAGEFACTORY_CLOUD`, then the endpoint overrides.
    /// Plain `http://` is refused unless the host is a loopback address (nothing else may see a token).
    public static func resolve(cloud: String?, armEndpoint: String?, environment: [String: String]) throws -> AzureCloudProfile {
        let cloudName = cloud ?? environment["IMAGEFACTORY_CLOUD"].flatMap { $0.isEmpty ? nil : $0 } ?? Name.azureCloud.rawValue
        guard let name = Name(caseInsensitive: cloudName) else {
            throw FactoryError(.usage, "Unknown Azure cloud '\(cloudName)'.",
                               hint: "Use one of \(Name.allCases.map(\.rawValue).joined(separator: ", ")) (--cloud or IMAGEFACTORY_CLOUD).")
        }
        var profile = AzureCloudProfile.named(name)
        if let text = armEndpoint ?? environment["IMAGEFACTORY_ARM_ENDPOINT"].flatMap({ $0.isEmpty ? nil : $0 }) {
            profile.armEndpoint = try Self.endpoint(text, what: "The ARM endpoint (--arm-endpoint / IMAGEFACTORY_ARM_ENDPOINT)")
        }
        if let text = environment["AZURE_AUTHORITY_HOST"], !text.isEmpty {
            profile.authorityHost = try Self.endpoint(text, what: "The authority host (AZURE_AUTHORITY_HOST)")
        }
        return profile
    }

    /// A base URL that may carry tokens: https anywhere, http only on loopback.
    static func endpoint(_ text: String, what: String) throws -> URL {
        let trimmed = text.hasSuffix("/") ? String(text.dropLast()) : text
        guard let url = URL(string: trimmed), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            throw FactoryError(.usage, "\(what) '\(text)' is not a URL.", hint: "Give an absolute URL such as https://management.azure.com.")
        }
        guard scheme == "https" || (scheme == "http" && Self.isLoopback(host)) else {
            throw FactoryError(.usage, "\(what) '\(text)' is plain http on a host that is not loopback: tokens would cross the network unencrypted.",
                               hint: "Use https (add a private CA with --ca-file), or http://127.0.0.1 for a local server.")
        }
        return url
    }

    /// 127.0.0.0/8, ::1 and localhost.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return h == "localhost" || h == "::1" || h.hasPrefix("127.")
    }
}
