//! The node's config file: every section, each owned by its crate, composed
//! into one [`Config`]. The loader, the error and the engine's sections are
//! `photon_core::config`; `[control]` and `[iam]` are
//! `photon_control::config`, `[s3]` `lightningstor::config`, `[nbd]`
//! `coronafs::config`, `[lb]` `fiberlb::config`, `[compute]`
//! `photon_vmm::config`, `[nightlight]` `nightlight::config`. A new service adds its
//! section here: a field, its name in `NAMES`, its check in `validate`.

use coronafs::config::NbdConfig;
use fiberlb::config::LbConfig;
use lightningstor::config::S3Config;
use nightlight::config::NightLightConfig;
use photon_control::config::{ControlConfig, IamConfig};
use photon_core::config::{
    AdminConfig, ConfigError, CoreConfig, EngineConfig, LimitsConfig, LogConfig, NodeConfig,
    Section, Sections, ShutdownConfig,
};
use photon_vmm::config::ComputeConfig;
use serde::{Deserialize, Serialize};

/// The whole node configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub engine: EngineConfig,
    pub admin: AdminConfig,
    pub control: ControlConfig,
    pub iam: IamConfig,
    pub s3: S3Config,
    pub nbd: NbdConfig,
    pub lb: LbConfig,
    pub compute: ComputeConfig,
    pub nightlight: NightLightConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub limits: LimitsConfig,
}

impl Sections for Config {
    const NAMES: &'static [&'static str] = &[
        NodeConfig::NAME,
        EngineConfig::NAME,
        AdminConfig::NAME,
        ControlConfig::NAME,
        IamConfig::NAME,
        S3Config::NAME,
        NbdConfig::NAME,
        LbConfig::NAME,
        ComputeConfig::NAME,
        NightLightConfig::NAME,
        LogConfig::NAME,
        ShutdownConfig::NAME,
        LimitsConfig::NAME,
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        self.node.validate()?;
        self.engine.validate()?;
        self.admin.validate()?;
        self.log.validate()?;
        self.shutdown.validate()?;
        self.limits.validate()?;
        self.control.validate()?;
        self.iam.validate()?;
        self.s3.validate()?;
        self.nbd.validate()?;
        self.lb
            .validate()
            .map_err(|e| ConfigError::invalid(e.key, e.reason))?;
        self.compute
            .validate()
            .map_err(|e| ConfigError::invalid(e.key, e.reason))?;
        self.nightlight.validate()?;
        // Checks that span sections go here. None today: every limit
        // depends on its own section, and which roles need which others is
        // a start error (`node::serve_inner`).
        Ok(())
    }
}

impl Config {
    /// The engine's sections, what the engine runs on.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            node: self.node.clone(),
            engine: self.engine.clone(),
            admin: self.admin.clone(),
            log: self.log.clone(),
            shutdown: self.shutdown.clone(),
            limits: self.limits.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use photon_core::config::ConfigLoader;

    use super::*;

    fn env_error(name: &str, value: &str) -> String {
        ConfigLoader::<Config>::new()
            .env([(name.to_string(), value.to_string())])
            .unwrap()
            .build()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_names_are_the_sections() {
        let value = toml::Value::try_from(Config::default()).unwrap();
        let mut fields: Vec<&str> = value
            .as_table()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut names = Config::NAMES.to_vec();
        fields.sort_unstable();
        names.sort_unstable();
        assert_eq!(fields, names);
        assert!(names.iter().all(|n| !n.contains('_')), "{names:?}");
        Config::default().validate().unwrap();
    }

    #[test]
    fn every_section_takes_its_variables_and_checks_them() {
        for (name, value, needle) in [
            (
                "PHOTON_S3_SEGMENT_MIB",
                "8",
                "`s3.segment_mib`: must be between 16 and 4096",
            ),
            (
                "PHOTON_NBD_JOURNAL_MIB",
                "0",
                "`nbd.journal_mib`: must be between 1 and 4096",
            ),
            (
                "PHOTON_LB_MTU",
                "100",
                "`lb.mtu`: must be 0 (the interface's) or 1280 to 65535",
            ),
            (
                "PHOTON_CONTROL_NODE_ID",
                "0",
                "`control.node_id`: must be at least 1",
            ),
            (
                "PHOTON_IAM_TOKEN_TTL_MAX_S",
                "0",
                "`iam.token_ttl_max_s`: must be 1 s to 7 days",
            ),
            (
                "PHOTON_LIMITS_IDLE_TIMEOUT_MS",
                "1",
                "`limits.idle_timeout_ms`: must be 100",
            ),
            (
                "PHOTON_NODE_NAME",
                "\"\"",
                "`node.name`: must be 1 to 63 characters",
            ),
        ] {
            let err = env_error(name, value);
            assert!(err.contains(needle), "{name}: {err}");
        }
        let config = ConfigLoader::<Config>::new()
            .env([("PHOTON_S3_REGION".to_string(), "eu-1".to_string())])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.s3.region, "eu-1");
    }

    #[test]
    fn unknown_keys_and_sections_are_named() {
        let mut loader = ConfigLoader::<Config>::new();
        loader.set("s3.regoin", "\"x\"", "test").unwrap();
        let err = loader.build().unwrap_err().to_string();
        assert!(
            err.contains("s3") && err.contains("unknown field `regoin`"),
            "{err}"
        );
        let err = ConfigLoader::<Config>::new()
            .with("vm.cores", "1", "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown section `vm`"), "{err}");
        assert!(
            err.contains(
                "node, engine, admin, control, iam, s3, nbd, lb, compute, nightlight, log"
            ),
            "{err}"
        );
    }
}
