// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title PinsealAnchor: an event log of Merkle roots, findable by who anchored them and by root.
/// @notice Stores nothing: the Anchored event is the record (its topics index the sender and the root), so an
/// anchor costs little more than a plain transaction with the root as calldata, while a verifier or an indexer
/// can find every root of an anchoring address with one eth_getLogs filter. Anyone may call it; what makes an
/// anchor count is who sent it (`by`), which a verifier checks against the anchoring address it trusts.
contract PinsealAnchor {
    event Anchored(address indexed by, bytes32 indexed root);

    function anchor(bytes32 root) external {
        emit Anchored(msg.sender, root);
    }
}
