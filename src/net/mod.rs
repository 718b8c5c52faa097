pub mod firewall;
pub mod nft;
