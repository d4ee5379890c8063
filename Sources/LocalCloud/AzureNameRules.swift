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
}
