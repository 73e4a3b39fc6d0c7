//! Entities are indices into vectors; these newtypes keep the index spaces apart.

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);
        impl $name {
            pub fn idx(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id!(
    /// A job, numbered in submission order.
    JobId
);
id!(
    /// An NVLink domain: an 8-GPU HGX node or a 72-GPU NVL72 rack.
    DomainId
);
id!(
    /// A leaf group (scalable unit): domains under one leaf switch.
    GroupId
);
id!(
    /// A hall: groups under one spine layer and power feed.
    HallId
);
id!(
    /// A pool: the groups that share a GPU type and a domain size.
    PoolId
);
id!(
    /// An entry of the facility's GPU catalog.
    GpuTypeId
);
id!(
    /// A node of the tenant share tree; jobs are charged to leaves.
    AccountId
);
