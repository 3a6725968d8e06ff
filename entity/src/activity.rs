//! A tenant's activity per hour, per series: `events|<source>|<account>|<type>` (events
//! received), `attempts|<flow id>` and `failures|<flow id>` (delivery attempts started, and
//! those that failed), `latency|<flow id>` (successful attempts; `total`: the milliseconds from
//! each event's arrival to the CRM's answer) and `amounts|<source>|<account>|<currency>`
//! (payments; `total` and `total_sq`: the sum of the amounts' natural logarithms and of their
//! squares). `hour` counts hours since the Unix epoch; `last_at` is the last time the series was
//! seen in that hour. The anomaly detectors' baselines are built from these rows.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "activity")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub series: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub hour: i64,
    pub count: i64,
    #[sea_orm(column_type = "Double")]
    pub total: f64,
    #[sea_orm(column_type = "Double")]
    pub total_sq: f64,
    pub last_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
