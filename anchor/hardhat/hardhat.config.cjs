// The local EVM node the anchoring tests start (`hardhat node`): CommonJS because the repository's
// package.json is "type": "module". No compilation happens through Hardhat (the anchoring contract is built
// by solc from npm, see pinseal_anchor/contract), so no solidity config and no network access.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      // The node mines each transaction at once by default; tests that need a transaction to wait in the
      // mempool (stuck transactions, reorgs) switch it off with evm_setAutomine.
      mining: { auto: true },
    },
  },
};
