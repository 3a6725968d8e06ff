//! A connection's CRM objects described for the field-mapping designer: the fields of one
//! object as the vendor lists them, or as the sandbox's stored records show them.

use serde::Serialize;
use tributary_worker::crm::{self, FieldInfo};
use utoipa::ToSchema;

use super::connections::find;
use crate::error::ApiError;
use crate::extract::TenantContext;
use crate::state::AppState;

/// One field of a CRM object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectFieldOut {
    /// The API name a step's `fields` use.
    #[schema(example = "LastName")]
    pub name: String,
    /// What the CRM's UI calls it.
    #[schema(example = "Last Name")]
    pub label: String,
    /// The vendor's type name (`string`, `picklist`, `email`, …); for the sandbox the JSON
    /// kind of the values seen (`string`, `number`, `boolean`, `object`, `array`, `null`).
    #[serde(rename = "type")]
    #[schema(example = "string")]
    pub kind: String,
    /// A new record cannot be created without it.
    pub required: bool,
    /// Its values are unique (or an external id), so it can match records.
    pub unique: bool,
}

/// Where the fields come from.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldsSource {
    /// The vendor's metadata API.
    Vendor,
    /// The field names of the sandbox's stored records.
    Seen,
}

/// The fields of one CRM object: required ones first, then by label.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectFieldsOut {
    #[schema(example = "Contact")]
    pub object: String,
    pub source: FieldsSource,
    pub fields: Vec<ObjectFieldOut>,
}

impl From<FieldInfo> for ObjectFieldOut {
    fn from(f: FieldInfo) -> Self {
        ObjectFieldOut {
            name: f.name,
            label: f.label,
            kind: f.kind,
            required: f.required,
            unique: f.unique,
        }
    }
}

/// What a failed read becomes: an unknown object 404; refused credentials, a vendor's
/// refusal, or a vendor that cannot answer now 409; never a 5xx. A read changes nothing,
/// not even the connection's status (deliveries and `POST …/test` do that).
fn failure(error: crm::CrmError) -> ApiError {
    let detail = |what: &str| format!("{what}: {} ({})", error.message, error.kind.as_str());
    match error.kind {
        crm::ErrorKind::NotFound => ApiError::NoSuch(error.message),
        crm::ErrorKind::Auth => ApiError::Conflict {
            detail: detail("the CRM refused the connection's credentials; reconnect it"),
            field: None,
        },
        crm::ErrorKind::Permanent | crm::ErrorKind::Invalid => ApiError::Conflict {
            detail: detail("the CRM refused to describe the object"),
            field: None,
        },
        // The CRM's own trouble is the connection's state for now, not a fault of this
        // server: said as a conflict to try again.
        crm::ErrorKind::RateLimited | crm::ErrorKind::Transient => ApiError::Conflict {
            detail: detail("the CRM could not answer now; try again later"),
            field: None,
        },
    }
}

/// The fields of `object` in the connection's CRM. Any role may read them.
pub async fn fields(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    object: &str,
) -> Result<ObjectFieldsOut, ApiError> {
    let connection = find(state, ctx, id).await?;
    if !crm::is_object_name(object) {
        return Err(ApiError::field(
            "object",
            format!("must match {}", crm::OBJECT_NAME_PATTERN),
        ));
    }
    if !crm::has_schema(&connection.provider) {
        return Err(ApiError::Conflict {
            detail: "this connection's CRM has no schema to read".into(),
            field: None,
        });
    }
    let (source, fields) = match crm::fields(state.connector(), &connection, object).await {
        Ok(found) => found,
        Err(error) => return Err(failure(error)),
    };
    Ok(ObjectFieldsOut {
        object: object.to_string(),
        source: match source {
            crm::FieldSource::Vendor => FieldsSource::Vendor,
            crm::FieldSource::Seen => FieldsSource::Seen,
        },
        fields: fields.into_iter().map(ObjectFieldOut::from).collect(),
    })
}
