// The configuration of the original PowerShell image factory's sample
// (Azure/azure-devtestlab, samples/DevTestLabs/Scripts/ImageFactory/Configuration), copied
// byte for byte, so the tests prove the sample a user already has validates unchanged.
// Fixtures live with the tests that use them: this target cannot carry resource files.

enum AzureSampleConfiguration {
    /// File paths relative to the configuration folder, and their exact contents.
    static let files: [String: String] = [
        "GoldenImages/Win2012R2/VS2015 Enterprise with Azure SDK.json": ####"""
{
  "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
  "contentVersion": "1.0.0.0",
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
        "notes": "Visual Studio Enterprise 2015 Update 3 with Azure SDK 2.9 on Windows Server 2012 R2",
        "galleryImageReference": {
          "offer": "VisualStudio",
          "publisher": "MicrosoftVisualStudio",
          "sku": "VS-2015-Ent-VSU3-AzureSDK-29-WS2012R2",
          "osType": "Windows",
          "version": "latest"
        },
        "size": "[parameters('size')]",
        "userName": "[parameters('userName')]",
        "password": "[parameters('password')]",
        "isAuthenticationWithSshKey": false,
        "labSubnetName": "[variables('labSubnetName')]",
        "disallowPublicIpAddress": false,
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
"""####,
        "GoldenImages/Win2016/Datacenter.json": ####"""
{
  "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
  "contentVersion": "1.0.0.0",
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
        "notes": "Windows Server 2016 Datacenter",
        "galleryImageReference": {
          "offer": "WindowsServer",
          "publisher": "MicrosoftWindowsServer",
          "sku": "2016-Datacenter",
          "osType": "Windows",
          "version": "latest"
        },
        "size": "[parameters('size')]",
        "userName": "[parameters('userName')]",
        "password": "[parameters('password')]",
        "isAuthenticationWithSshKey": false,
        "labSubnetName": "[variables('labSubnetName')]",
        "disallowPublicIpAddress": false,
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
"""####,
        "GoldenImages/Win2016/SQLServer 2016 Express.json": ####"""
{
  "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
  "contentVersion": "1.0.0.0",
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
        "notes": "Free License: SQL Server 2016 SP1 Express on Windows Server 2016",
        "galleryImageReference": {
          "offer": "SQL2016SP1-WS2016",
          "publisher": "MicrosoftSQLServer",
          "sku": "Express",
          "osType": "Windows",
          "version": "latest"
        },
        "size": "[parameters('size')]",
        "userName": "[parameters('userName')]",
        "password": "[parameters('password')]",
        "isAuthenticationWithSshKey": false,
        "labSubnetName": "[variables('labSubnetName')]",
        "disallowPublicIpAddress": false,
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
"""####,
        "Labs.json": ####"""
{
  "Labs": [
    {
      "ResourceGroup": "<resource group name>",
      "SubscriptionId": "<subscription ID that contains the lab>",
      "LabName": "<Name of the DevTest Lab>",
      "ImagePaths": [
        "Win2012R2/VS2015 Enterprise with Azure SDK.json",
        "Win2016"
      ]
    }
  ]
}
"""####,
    ]
}
