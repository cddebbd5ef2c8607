"""The results tables' columns: one name, one meaning each."""

from keras_takd.takd import schema


def test_metric_columns_are_unique_and_disjoint_from_keys():
    assert not {*schema.KEY_COLUMNS, schema.ROLE_COLUMN} & set(schema.METRIC_COLUMNS)
    for attack in (*schema.ATTACKS, schema.MASKED_L2_PREFIX):
        for stat in ("mean", "max", "success_rate", "attacked", "excluded"):
            assert f"{attack}_{stat}" in schema.METRIC_COLUMNS


def test_key_columns_identify_a_model_and_lead_the_chain_columns():
    assert schema.KEY_COLUMNS == ("dataset", "temperature", "stage")
    assert schema.CHAIN_COLUMNS[: len(schema.KEY_COLUMNS)] == schema.KEY_COLUMNS
    assert schema.RESULT_COLUMNS[:4] == (*schema.KEY_COLUMNS, schema.ROLE_COLUMN)
