import FactoryModel
import Foundation

/// Azure's naming rules as the emulated services enforce them, written here and not borrowed
/// from the client's `Naming`: the local cloud must catch a wrong rule on the client's side,
/// so the two never agree by construction. Messages follow Azure's own wording.
enum AzureNameRules {
    /// Compute's rule for a VM's computer name: Windows at most 15 characters, Linux at most 64;
    /// ASCII letters, digits and hyphens; not only digits; no hyphen at either end.
    static func virtualMachineNameError(_ name: String, osType: OSType) -> CloudError? {
        let maximum = osType == .windows ? 15 : 64
        let bytes = Array(name.utf8)
        let allowed = bytes.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }
        let onlyDigits = !bytes.isEmpty && bytes.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        let valid = !bytes.isEmpty && bytes.count <= maximum && allowed && !onlyDigits && bytes.first != 0x2D && bytes.last != 0x2D
        guard !valid else { return nil }
        let os = osType == .windows ? "Windows" : "Linux"
        return CloudError(status: 400, code: "InvalidParameter",
                          message: "The virtual machine name '\(name)' is invalid. \(os) computer names must be 1 to \(maximum) characters long, "
                              + "contain only letters, numbers and hyphens, cannot be entirely numeric, and cannot start or end with a hyphen.")
    }

    /// ARM answers a malformed subscription id in a path with 400 InvalidSubscriptionId.
    static func subscriptionError(_ id: String) -> CloudError? {
        let parts = id.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        let isGUID = parts.map(\.count) == [8, 4, 4, 4, 12] && parts.joined().utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) || ($0 >= 0x61 && $0 <= 0x66)
        }
        return isGUID ? nil : CloudError(status: 400, code: "InvalidSubscriptionId",
                                         message: "The provided subscription identifier '\(id)' is malformed or invalid.")
    }

    /// Resource group names: 1 to 90 characters of letters, digits, `_`, `-`, `.`, `(`, `)`, not ending in `.`.
    static func resourceGroupError(_ name: String) -> CloudError? {
        let scalars = Array(name.unicodeScalars)
        let valid = !scalars.isEmpty && name.count <= 90 && scalars.last != "."
            && scalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" || $0 == "." || $0 == "(" || $0 == ")" }
        return valid ? nil : CloudError(status: 400, code: "InvalidResourceGroupName",
                                        message: "Resource group name '\(name)' is invalid. It can include alphanumeric, underscore, parentheses, hyphen, period (except at end), and Unicode characters that match the allowed characters.")
    }
}
