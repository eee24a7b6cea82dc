//! Adjust Attribute (KMIP 2.x): increments or decrements a numeric attribute (Integer, Long
//! Integer, Interval, Date-Time) by a value, or negates a Boolean or numeric one, on the single
//! instance an object has; an absent attribute counts as 0 or false (2.1 §6.1.3).

use super::attribute_rules::{check_client_writable, check_is_attribute};
use super::{OpContext, OpError, Ops};
use kmip_wire::model::{AdjustAttributeRequest, Attribute, UidResponse};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;

/// Adjustment Type values (2.1 §11.1).
const INCREMENT: u32 = 1;
const DECREMENT: u32 = 2;
const NEGATE: u32 = 3;

impl Ops {
    pub(super) async fn adjust_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: AdjustAttributeRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        check_is_attribute(&r.name)?;
        check_client_writable(&target, &r.name)?;
        let now = ctx.now;
        self.update(ctx, &uid, |o| {
            let instances: Vec<Value> = o.find(&r.name).map(|a| a.value.clone()).collect();
            let current = instances.first().cloned();
            if instances.len() > 1 {
                return Err(OpError::InvalidField(
                    "the attribute has several instances; Adjust Attribute changes a single one"
                        .into(),
                ));
            }
            let value = adjusted(current, r.adjustment_type, r.adjustment_value.as_ref())?;
            let adjusted = Attribute::from_value(r.name.clone(), value)?;
            o.attributes.retain(|a| a.name != r.name);
            o.attributes.push(adjusted);
            o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
            Ok(())
        })
        .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }
}

/// The value `current` (absent: 0 or false, of the adjustment value's type) becomes.
fn adjusted(current: Option<Value>, kind: u32, by: Option<&Value>) -> Result<Value, OpError> {
    let out_of_range = || OpError::InvalidField("the adjusted value is out of range".into());
    let zero_like = |v: &Value| match v {
        Value::Integer(_) => Some(Value::Integer(0)),
        Value::LongInteger(_) => Some(Value::LongInteger(0)),
        Value::Interval(_) => Some(Value::Interval(0)),
        Value::DateTime(_) => Some(Value::DateTime(0)),
        Value::Boolean(_) => Some(Value::Boolean(false)),
        _ => None,
    };
    let start = current
        .or_else(|| by.and_then(zero_like))
        .or((kind == NEGATE).then_some(Value::Boolean(false)))
        .ok_or_else(|| OpError::MissingData("Adjustment Value".into()))?;
    if kind == NEGATE {
        return match start {
            Value::Boolean(b) => Ok(Value::Boolean(!b)),
            Value::Integer(i) => i.checked_neg().map(Value::Integer).ok_or_else(out_of_range),
            Value::LongInteger(i) => i
                .checked_neg()
                .map(Value::LongInteger)
                .ok_or_else(out_of_range),
            _ => Err(OpError::InvalidField(
                "this attribute cannot be negated".into(),
            )),
        };
    }
    let sign = match kind {
        INCREMENT => 1,
        DECREMENT => -1,
        _ => return Err(OpError::InvalidField("unknown Adjustment Type".into())),
    };
    let by = by.ok_or_else(|| OpError::MissingData("Adjustment Value".into()))?;
    let wrong_type =
        || OpError::InvalidField("Adjustment Value is not of the attribute's type".into());
    match (start, by) {
        (Value::Integer(a), Value::Integer(b)) => a
            .checked_add(b.checked_mul(sign).ok_or_else(out_of_range)?)
            .map(Value::Integer)
            .ok_or_else(out_of_range),
        (Value::LongInteger(a), Value::LongInteger(b)) => a
            .checked_add(b.checked_mul(i64::from(sign)).ok_or_else(out_of_range)?)
            .map(Value::LongInteger)
            .ok_or_else(out_of_range),
        (Value::DateTime(a), Value::DateTime(b) | Value::LongInteger(b)) => a
            .checked_add(b.checked_mul(i64::from(sign)).ok_or_else(out_of_range)?)
            .map(Value::DateTime)
            .ok_or_else(out_of_range),
        (Value::Interval(a), Value::Interval(b)) => {
            let r = if sign > 0 {
                a.checked_add(*b)
            } else {
                a.checked_sub(*b)
            };
            r.map(Value::Interval).ok_or_else(out_of_range)
        }
        _ => Err(wrong_type()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_move_by_the_value_and_flags_negate() {
        let int = Value::Integer;
        assert_eq!(
            adjusted(Some(int(5)), INCREMENT, Some(&int(3))).unwrap(),
            int(8)
        );
        assert_eq!(
            adjusted(Some(int(5)), DECREMENT, Some(&int(7))).unwrap(),
            int(-2)
        );
        assert_eq!(adjusted(None, INCREMENT, Some(&int(4))).unwrap(), int(4));
        assert_eq!(
            adjusted(Some(Value::Boolean(true)), NEGATE, None).unwrap(),
            Value::Boolean(false)
        );
        assert_eq!(adjusted(None, NEGATE, None).unwrap(), Value::Boolean(true));
        assert_eq!(
            adjusted(
                Some(Value::Interval(5)),
                DECREMENT,
                Some(&Value::Interval(2))
            )
            .unwrap(),
            Value::Interval(3)
        );
        assert!(adjusted(
            Some(Value::Interval(1)),
            DECREMENT,
            Some(&Value::Interval(2))
        )
        .is_err());
        assert!(adjusted(Some(int(i32::MAX)), INCREMENT, Some(&int(1))).is_err());
        assert!(adjusted(Some(int(1)), INCREMENT, Some(&Value::LongInteger(1))).is_err());
        assert!(adjusted(Some(int(1)), INCREMENT, None).is_err());
        assert!(adjusted(Some(int(1)), 9, Some(&int(1))).is_err());
    }
}
