// Compiles anchor/pinseal_anchor/contract/PinsealAnchor.sol with the pinned solc from npm (solc-js: no
// download, no network) and prints the artifact JSON pinseal_anchor commits as PinsealAnchor.json.
// `make anchor-contract` writes it; anchor/tests/test_contract_artifact.py checks the committed one matches.
//
// evmVersion "paris": no PUSH0 or newer opcodes, so the same bytecode deploys on every chain profile
// (some EVM sidechains lag behind Ethereum's hardforks). Optimizer on, 200 runs: the usual default.
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const source = path.join(__dirname, "..", "pinseal_anchor", "contract", "PinsealAnchor.sol");
const text = fs.readFileSync(source, "utf8");
const settings = {
  evmVersion: "paris",
  optimizer: { enabled: true, runs: 200 },
  // No metadata hash: the bytecode then depends on the source alone, not on the file's path or comments'
  // IPFS hash, so the artifact is reproducible byte for byte.
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};
const input = { language: "Solidity", sources: { "PinsealAnchor.sol": { content: text } }, settings };
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const contract = output.contracts["PinsealAnchor.sol"].PinsealAnchor;
const artifact = {
  contractName: "PinsealAnchor",
  solcVersion: solc.version(),
  sourceSha256: crypto.createHash("sha256").update(text).digest("hex"),
  settings: { evmVersion: settings.evmVersion, optimizer: settings.optimizer, metadata: settings.metadata },
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
};
process.stdout.write(JSON.stringify(artifact, null, 2) + "\n");
